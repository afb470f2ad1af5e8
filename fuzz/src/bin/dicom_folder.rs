//! afl target `dicom_folder`: see `flare_fuzz::dicom_folder` for what the input bytes are.

fn main() {
    flare_fuzz::init();
    afl::fuzz!(|data: &[u8]| {
        flare_fuzz::dicom_folder(data);
    });
}

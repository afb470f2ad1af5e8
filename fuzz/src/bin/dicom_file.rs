//! afl target `dicom_file`: see `flare_fuzz::dicom_file` for what the input bytes are.

fn main() {
    flare_fuzz::init();
    afl::fuzz!(|data: &[u8]| {
        flare_fuzz::dicom_file(data);
    });
}

//! afl target `nifti_gz`: see `flare_fuzz::nifti_gz` for what the input bytes are.

fn main() {
    flare_fuzz::init();
    afl::fuzz!(|data: &[u8]| {
        flare_fuzz::nifti_gz(data);
    });
}

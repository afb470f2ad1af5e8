//! afl target `nifti`: see `flare_fuzz::nifti` for what the input bytes are.

fn main() {
    flare_fuzz::init();
    afl::fuzz!(|data: &[u8]| {
        flare_fuzz::nifti(data);
    });
}

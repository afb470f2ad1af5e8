//! afl target `model_file`: see `flare_fuzz::model_file` for what the input bytes are.

fn main() {
    flare_fuzz::init();
    afl::fuzz!(|data: &[u8]| {
        flare_fuzz::model_file(data);
    });
}

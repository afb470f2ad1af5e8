//! Helpers shared by the `flare` end-to-end tests.

use std::process::{Command, Output};

/// Runs the `flare` binary under test with `args` and waits for it.
pub fn flare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flare"))
        .args(args)
        .output()
        .expect("run flare")
}

/// A captured stream as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

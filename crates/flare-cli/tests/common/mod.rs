//! Helpers shared by the `flare` end-to-end tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use flare_testkit::{TempDir, workspace_root};

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

/// A path as &str (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 test path")
}

/// The phantom model: its two committed stages (crates/flare-pipeline/tests/fixtures, see the
/// README there) bundled with `flare bundle` once per test process (tests run in parallel
/// threads). It really finds the phantom organs, so tests can assert where they are.
pub fn phantom_model() -> PathBuf {
    static MODEL: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = MODEL.get_or_init(|| {
        let fixtures = workspace_root().join("crates/flare-pipeline/tests/fixtures");
        let dir = TempDir::new("phantom-model");
        let out = dir.join("phantom.safetensors");
        let o = flare(&[
            "bundle",
            "--stage1",
            p(&fixtures.join("phantom-stage1.safetensors")),
            "--stage2",
            p(&fixtures.join("phantom-stage2.safetensors")),
            "--out",
            p(&out),
            "--name",
            "phantom",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        (dir, out)
    });
    path.clone()
}

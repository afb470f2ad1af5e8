//! Helpers for flare's tests (a dev-dependency only; never linked into the product).
//!
//! Tests that need something the machine may lack (Python with nibabel, the `../shared` data)
//! ask here first and *skip with a printed reason* when it is missing, so that the README's test
//! command passes on a fresh clone while CI, which has both, runs them.

#![deny(missing_docs)]
// `deny`, not `forbid`: `mutate::CappedAlloc` must implement the unsafe `GlobalAlloc` trait.
#![deny(unsafe_code)]

pub mod bench;
pub mod mutate;
pub mod phantom;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// `||a - b|| / ||b||` in f64 (plain `||a - b||` when `b` is all zero): how far a result is
/// from its reference, whatever their scale. Panics when the lengths differ.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate lives in <root>/crates/flare-testkit.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `../shared` folder next to the checkout (or `$FLARE_SHARED`), if it exists.
/// Prints why a test is skipped when it does not.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FLARE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("..").join("shared"));
    if dir.join("data").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP {test}: no shared data at {} (set FLARE_SHARED)",
            dir.display()
        );
        None
    }
}

/// The Python interpreter to use as an oracle (`$FLARE_PYTHON` or `python3`), if it can import
/// every module in `modules`. Prints why a test is skipped when it cannot.
pub fn python_with(test: &str, modules: &[&str]) -> Option<PathBuf> {
    let exe = std::env::var_os("FLARE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let probe = if modules.is_empty() {
        "import sys".to_string()
    } else {
        format!("import {}", modules.join(", "))
    };
    match Command::new(&exe).arg("-c").arg(&probe).output() {
        Ok(o) if o.status.success() => Some(exe),
        Ok(o) => {
            eprintln!(
                "SKIP {test}: {} cannot `{probe}`: {}",
                exe.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            None
        }
        Err(e) => {
            eprintln!("SKIP {test}: cannot run {}: {e}", exe.display());
            None
        }
    }
}

/// Runs a Python snippet with arguments and returns its standard output; panics with the
/// script's standard error when it fails (a failing oracle is a failing test).
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "python oracle failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh temporary directory under the target folder, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `target/test-tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = workspace_root()
            .join("target")
            .join("test-tmp")
            .join(format!(
                "{name}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::rel_l2;

    #[test]
    fn rel_l2_is_the_error_relative_to_the_reference() {
        assert_eq!(rel_l2(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        // ||(0, 0) - (3, 4)|| = 5 over ||(3, 4)|| = 5.
        assert_eq!(rel_l2(&[0.0, 0.0], &[3.0, 4.0]), 1.0);
        // An all-zero reference: the plain distance.
        assert_eq!(rel_l2(&[3.0, 4.0], &[0.0, 0.0]), 5.0);
    }
}

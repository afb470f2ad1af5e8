//! A volume that would not fit in memory is refused before it is allocated.
//!
//! The memory limit comes from the environment (`FLARE_MEMORY_LIMIT_MB`), which is shared by all
//! threads of a test binary, so the check runs in a child process of this binary with the limit
//! set to 0 MB, leaving every other test untouched.

use std::{path::PathBuf, process::Command};

const CHILD: &str = "child_reads_with_no_memory";
const MARKER: &str = "FLARE_DICOM_MEMORY_CHILD";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

#[test]
fn refused_before_allocating() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            CHILD,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FLARE_MEMORY_LIMIT_MB", "0")
        .env(MARKER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The child prints the message it checked, so that a child that ran nothing cannot pass.
    assert!(stdout.contains("CHECKED:"), "{stdout}");
}

#[test]
#[ignore = "run by `refused_before_allocating` in a child process with FLARE_MEMORY_LIMIT_MB=0"]
fn child_reads_with_no_memory() {
    if std::env::var_os(MARKER).is_none() {
        eprintln!("SKIP {CHILD}: only meaningful as the child of refused_before_allocating");
        return;
    }
    let dir = fixture("shuffled");
    let err = flare_dicom::read_series(&dir, None).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, flare_dicom::DicomError::Memory { .. }),
        "{msg}"
    );
    assert_eq!(
        msg,
        format!(
            "{}: the volume ([8, 6, 5] voxels, f32) with a slice being decoded needs 1 MB but only 0 MB of memory is available",
            dir.display()
        )
    );
    println!("CHECKED: {msg}");
}

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

/// Runs the ignored test `name` of this binary alone in a child process with `env`, asserts
/// that it passed, and returns what it printed.
fn run_child(name: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn refused_before_allocating() {
    let stdout = run_child(CHILD, &[("FLARE_MEMORY_LIMIT_MB", "0"), (MARKER, "1")]);
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

const RSS_CHILD: &str = "child_reads_corrupt_lengths";
const RSS_MARKER: &str = "FLARE_DICOM_RSS_CHILD";
/// Peak RSS allowed to the child: the test binary itself takes about 10 MB; dicom-rs 0.10.1
/// took 4.2 GB for one corrupt length (issue 12).
const RSS_LIMIT_MB: u64 = 200;

#[test]
fn corrupt_lengths_are_refused_without_allocating_them() {
    let stdout = run_child(RSS_CHILD, &[(RSS_MARKER, "1")]);
    let peak_mb: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_MB: "))
        .unwrap_or_else(|| panic!("no peak RSS line: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    println!("child peak RSS {peak_mb} MB");
    assert!(peak_mb < RSS_LIMIT_MB, "peak RSS {peak_mb} MB\n{stdout}");
}

/// Copies a fixture series and sets, in every file, the 4-byte length of `tag`'s first
/// occurrence to 0xFFFFFFF0 (explicit VR: after tag, VR and 2 reserved bytes; implicit VR:
/// right after the tag).
fn corrupt_series(
    fixture_name: &str,
    tag: [u8; 4],
    explicit_ob_ow: bool,
) -> flare_testkit::TempDir {
    let tmp = flare_testkit::TempDir::new("dicom-corrupt-length");
    for entry in std::fs::read_dir(fixture(fixture_name)).unwrap() {
        let p = entry.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes
            .windows(4)
            .position(|w| w == tag)
            .expect("tag in the file");
        let len_at = if explicit_ob_ow { at + 8 } else { at + 4 };
        bytes[len_at..len_at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        std::fs::write(tmp.join(p.file_name().unwrap().to_str().unwrap()), bytes).unwrap();
    }
    tmp
}

#[test]
#[ignore = "run by `corrupt_lengths_are_refused_without_allocating_them` in a child process"]
fn child_reads_corrupt_lengths() {
    if std::env::var_os(RSS_MARKER).is_none() {
        eprintln!("SKIP {RSS_CHILD}: only meaningful as the child of its parent test");
        return;
    }
    // PixelData (7FE0,0010) OW of every slice (explicit VR little endian), decoded in parallel.
    let tmp = corrupt_series("shuffled", [0xe0, 0x7f, 0x10, 0x00], true);
    let msg = flare_dicom::read_series(tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("element (7FE0,0010) at byte 1000 declares 4294967280 bytes but only 96 remain in the file"),
        "{msg}"
    );
    println!("CHECKED: {msg}");
    // A header element, Modality (0008,0060), of every slice (implicit VR): the scan, which
    // reads headers in parallel, finds nothing readable.
    let tmp = corrupt_series("oblique", [0x08, 0x00, 0x60, 0x00], false);
    let msg = flare_dicom::read_series(tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no DICOM image files found (6 other file(s) skipped)")
            && msg.contains("element (0008,0060) at byte")
            && msg.contains("declares 4294967280 bytes"),
        "{msg}"
    );
    println!("CHECKED: {msg}");
    let peak = flare_measure::own_peak_rss_bytes().expect("VmHWM readable");
    println!("PEAK_RSS_MB: {}", peak >> 20);
}

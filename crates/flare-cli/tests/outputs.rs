//! `flare segment`'s outputs under hostile conditions (issue 12, point 8): file names that are
//! not UTF-8, two processes on one output folder, a report picture that cannot be written,
//! side outputs that cannot be written, the CSV's permissions, OS errors said once.

mod common;

use std::{
    ffi::OsStr,
    path::Path,
    process::{Command, Output},
};

use common::{flare, p, phantom_model, text};
use flare_nifti::DataType;
use flare_testkit::{
    TempDir,
    phantom::{PhantomSpec, phantom},
};

/// A small phantom CT at `path`.
fn write_ct(path: &Path, seed: u64) {
    let (ct, _) = phantom(&PhantomSpec::new([48, 48, 32], [3.0, 3.0, 5.0], seed)).unwrap();
    flare_nifti::write_volume(path, &ct, Some(DataType::Int16)).unwrap();
}

/// `flare segment -i INPUT -o OUTPUT --model phantom EXTRA...` with paths as `OsStr`.
fn segment(input: &Path, output: &Path, extra: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flare"))
        .args([OsStr::new("segment"), "-i".as_ref(), input.as_os_str()])
        .args([OsStr::new("-o"), output.as_os_str()])
        .args([OsStr::new("--model"), phantom_model().as_os_str()])
        .args(extra)
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_are_segmented_in_a_folder_and_alone() {
    use std::os::unix::ffi::OsStrExt;
    let t = TempDir::new("outputs-names");
    let input = t.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let ct = input.join(OsStr::from_bytes(b"caf\xe9_0000.nii.gz"));
    write_ct(&ct, 1);
    let out = t.join("out");
    let o = segment(&input, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // The output keeps the input's bytes; messages show the name lossily.
    assert!(out.join(OsStr::from_bytes(b"caf\xe9.nii.gz")).is_file());
    assert!(
        text(&o.stdout).starts_with("caf\u{fffd}: wrote "),
        "{}",
        text(&o.stdout)
    );
    // The same file alone, into a folder: the same name.
    let alone = t.join("alone");
    let o = segment(&ct, &alone, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(alone.join(OsStr::from_bytes(b"caf\xe9.nii.gz")).is_file());
}

#[test]
fn a_case_another_process_is_writing_is_skipped_and_left_to_it() {
    let t = TempDir::new("outputs-lock");
    let input = t.join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_ct(&input.join("a_0000.nii.gz"), 2);
    write_ct(&input.join("b_0000.nii.gz"), 3);
    let out = t.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Case a's lock, held as another `flare segment` would hold it.
    let held = std::fs::File::create(out.join(".a.nii.gz.lock")).unwrap();
    held.lock().unwrap();
    let o = segment(&input, &out, &[OsStr::new("--overwrite")]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("a: skipped (another flare process is writing"),
        "{stderr}"
    );
    assert!(!out.join("a.nii.gz").exists() && out.join("b.nii.gz").is_file());
    // No record of its own for a: the holder writes it.
    assert!(!out.join(".flare-records/a.json").exists());
    assert!(out.join(".flare-records/b.json").is_file());
    // Released (the holder ended): the next run does it, and removes the lock file after.
    drop(held);
    let o = segment(&input, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.join("a.nii.gz").is_file());
    assert!(!out.join(".a.nii.gz.lock").exists());
}

#[test]
fn a_report_picture_that_cannot_be_written_fails_the_case() {
    let t = TempDir::new("outputs-png");
    let ct = t.join("scan_0000.nii.gz");
    write_ct(&ct, 4);
    let report = t.join("report");
    // Something in the way of the picture (as a full disk would be).
    std::fs::create_dir_all(report.join("scan.png")).unwrap();
    let out = t.join("scan.nii.gz");
    let o = segment(&ct, &out, &[OsStr::new("--report"), report.as_os_str()]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("flare: error: scan: report picture not written"),
        "{stderr}"
    );
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("failed: report picture not written"),
        "{html}"
    );
}

#[test]
fn unwritable_side_outputs_are_refused_before_any_work() {
    let t = TempDir::new("outputs-side");
    let ct = t.join("scan_0000.nii.gz");
    write_ct(&ct, 5);
    let out = t.join("scan.nii.gz");
    let a_file = t.join("plain");
    std::fs::write(&a_file, b"").unwrap();
    for (option, path, expect) in [
        (
            "--volumes",
            t.join("no/such/v.csv"),
            "No such file or directory",
        ),
        ("--volumes", t.path().to_path_buf(), "is a folder"),
        ("--report", a_file.join("report"), "Not a directory"),
    ] {
        let o = flare(&["segment", "-i", p(&ct), "-o", p(&out), option, p(&path)]);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        // Said once, on one line, before any work.
        assert_eq!(stderr.matches(expect).count(), 1, "{stderr}");
        assert!(!stderr.contains("segment: model"), "{stderr}");
        assert!(!out.exists());
    }
}

#[cfg(unix)]
#[test]
fn the_volumes_csv_is_readable_by_others_like_any_file() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("outputs-mode");
    let ct = t.join("scan_0000.nii.gz");
    write_ct(&ct, 6);
    let csv = t.join("v.csv");
    let o = segment(
        &ct,
        &t.join("scan.nii.gz"),
        &[OsStr::new("--volumes"), csv.as_os_str()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // What this process's umask makes of a new file, less the execute and others' write bits.
    let plain = t.join("plain");
    std::fs::write(&plain, b"").unwrap();
    let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&csv), mode(&plain) & 0o644);
}

#[test]
fn two_processes_on_one_folder_do_each_case_once() {
    let t = TempDir::new("outputs-two");
    let input = t.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        write_ct(&input.join(format!("{n}_0000.nii.gz")), 10 + i as u64);
    }
    let out = t.join("out");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_flare"))
            .args(["segment", "-i", p(&input), "-o", p(&out), "--threads", "1"])
            .args(["--model", p(&phantom_model())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    let mut wrote: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|o| {
            text(&o.stdout)
                .lines()
                .filter_map(|l| l.split_once(": wrote ").map(|(c, _)| c.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    wrote.sort();
    // Every case written, and by one process only.
    assert_eq!(wrote, names, "{}\n{}", text(&a.stderr), text(&b.stderr));
}

/// A reader that closes flare's stdout before flare writes to it (`flare info builtin | head`)
/// ends flare by SIGPIPE, quietly, as coreutils end: no panic message, no exit code 101 (Rust
/// ignores SIGPIPE by default, and `println!` then panics on the broken pipe).
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_ends_flare_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flare"))
        .args(["info", "builtin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flare");
    // Close the read end at once: flare's first line of output meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for flare");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}

//! Hostile input, the CI side of `fuzz/` (issue 12): a few thousand deterministic mutants of
//! the DICOM fuzz seeds (single files of several transfer syntaxes, and series of 2-3 files
//! packed into one input) are read as a series folder. Each must return Ok or an error, never
//! panic, and never ask for one allocation above the memory limit (the test binary's allocator
//! records the largest request: `flare_testkit::mutate::CappedAlloc`).
//!
//! The only test in this binary: it sets `FLARE_MEMORY_LIMIT_MB` for the whole process.

use std::path::Path;

use flare_testkit::{
    TempDir,
    mutate::{
        CappedAlloc, fuzz_seeds, largest_allocation, reset_largest_allocation, run_mutations,
    },
};

const LIMIT_MB: usize = 64;
const CAP: usize = (LIMIT_MB + 1) << 20;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc::new(CAP);

/// Separator of the files of one `dicom_folder` input (as `fuzz/src/lib.rs`).
const SEPARATOR: &[u8] = b"\n--flare-next-file--\n";

/// Empties `dir`, writes `files` into it and reads it as a series.
fn read_folder(dir: &Path, files: &[&[u8]]) -> Result<(), String> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    std::fs::create_dir_all(dir).expect("series folder");
    for (i, f) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("IM{i:04}")), f).expect("write slice");
    }
    flare_dicom::read_series(dir, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn split(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while out.len() < 2 {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

#[test]
fn mutated_series_are_refused_cleanly_within_the_memory_limit() {
    // SAFETY: the only test of this binary, run before any reader starts a thread.
    unsafe { std::env::set_var("FLARE_MEMORY_LIMIT_MB", LIMIT_MB.to_string()) };
    let tmp = TempDir::new("dicom-mutation");
    let one = tmp.join("one");
    run_mutations(
        "dicom_file",
        &fuzz_seeds("dicom_file"),
        2000,
        21,
        CAP,
        |b| read_folder(&one, &[b]),
    );
    // The inputs the first mutation runs and afl found (2026-12-06), before the header walk
    // checked every length against the file: each allocated 0.7-3.5 GB for one element.
    let found = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/found/dicom");
    let mut replayed = 0;
    for entry in std::fs::read_dir(found).expect("fuzz/found/dicom") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "dcm") {
            let bytes = std::fs::read(&path).expect("found input");
            reset_largest_allocation();
            let result = read_folder(&one, &[&bytes]);
            assert!(result.is_err(), "{}: read without an error", path.display());
            let largest = largest_allocation();
            assert!(
                largest <= CAP,
                "{}: {largest} bytes at once",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 4, "only {replayed} found inputs replayed");
    let many = tmp.join("many");
    run_mutations(
        "dicom_folder",
        &fuzz_seeds("dicom_folder"),
        1000,
        22,
        CAP,
        |b| read_folder(&many, &split(b)),
    );
}

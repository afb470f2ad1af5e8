//! Hostile input, the CI side of `fuzz/` (issue 12): a few thousand deterministic mutants of
//! the fuzz seeds (plain .nii, and .nii.gz both as damaged streams and as damaged files
//! compressed intact) go through every reader. Each must return Ok or an error naming the file,
//! never panic, and never ask for one allocation above the memory limit: the test binary's
//! allocator records the largest request (`flare_testkit::mutate::CappedAlloc`).
//!
//! The only test in this binary: it sets `FLARE_MEMORY_LIMIT_MB` for the whole process.

use std::{io::Write, path::Path};

use flare_nifti::{read_image, read_label_map, read_raw};
use flare_testkit::{
    TempDir,
    mutate::{CappedAlloc, fuzz_seeds, run_mutations},
};

/// The readers' memory limit in this process.
const LIMIT_MB: usize = 64;
/// Largest single allocation allowed: the limit plus the compressed file held beside the
/// output while inflating (a few kB here).
const CAP: usize = (LIMIT_MB + 1) << 20;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc::new(CAP);

/// Reads `path` every way the CLI does; the image reader's outcome is the input's. Every error
/// must start with the file's path.
fn read_all(path: &Path) -> Result<(), String> {
    let named = |e: flare_nifti::NiftiError| {
        let msg = e.to_string();
        assert!(
            msg.starts_with(&path.display().to_string()),
            "error does not name the file: {msg}"
        );
        msg
    };
    let _ = read_label_map(path).map_err(named);
    let _ = read_raw(path).map_err(named);
    read_image(path).map(|_| ()).map_err(named)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

#[test]
fn mutated_files_are_refused_cleanly_within_the_memory_limit() {
    // SAFETY: the only test of this binary, run before any reader starts a thread.
    unsafe { std::env::set_var("FLARE_MEMORY_LIMIT_MB", LIMIT_MB.to_string()) };
    let tmp = TempDir::new("nifti-mutation");
    let nii = tmp.join("input.nii");
    let plain = run_mutations("nifti", &fuzz_seeds("nifti"), 2500, 12, CAP, |bytes| {
        std::fs::write(&nii, bytes).expect("write input");
        read_all(&nii)
    });
    // `nifti_gz` seeds: a mode byte (odd: compress the rest here), then the file.
    let gz = tmp.join("input.nii.gz");
    let compressed = run_mutations("nifti_gz", &fuzz_seeds("nifti_gz"), 1500, 13, CAP, |b| {
        let file = match b.split_first() {
            Some((m, rest)) if m & 1 == 1 => gzip(rest),
            Some((_, rest)) => rest.to_vec(),
            None => Vec::new(),
        };
        std::fs::write(&gz, file).expect("write input");
        read_all(&gz)
    });
    // The mutants reach both outcomes (a run where everything fails would test nothing).
    for r in [plain, compressed] {
        assert!(r.ok > r.inputs / 20 && r.err > r.inputs / 4, "{r:?}");
    }
}

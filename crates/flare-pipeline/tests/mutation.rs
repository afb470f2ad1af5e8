//! Hostile input, the CI side of `fuzz/` (issue 12): a few thousand deterministic mutants of
//! the model-file fuzz seeds (tiny two- and three-stage models, a single-stage file) go through
//! the two model-file readers (`Model::from_bytes`, as `flare segment --model` reads a file,
//! and `flare_model::file::from_bytes`, as `flare bundle` reads a stage). Each must return Ok
//! or an error naming the file, never panic, and never ask for one allocation above the memory
//! limit: an architecture in the card is checked against the file's length and the memory
//! limit before a network is built (`flare_testkit::mutate::CappedAlloc` records the largest
//! request).
//!
//! The only test in this binary: it sets `FLARE_MEMORY_LIMIT_MB` for the whole process.

use std::path::Path;

use flare_pipeline::Model;
use flare_testkit::mutate::{CappedAlloc, fuzz_seeds, run_mutations};

const LIMIT_MB: usize = 64;
const CAP: usize = (LIMIT_MB + 1) << 20;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc::new(CAP);

#[test]
fn mutated_model_files_are_refused_cleanly_within_the_memory_limit() {
    // SAFETY: the only test of this binary, run before any reader starts a thread.
    unsafe { std::env::set_var("FLARE_MEMORY_LIMIT_MB", LIMIT_MB.to_string()) };
    let origin = Path::new("mutant.safetensors");
    let named = |msg: String| {
        assert!(
            msg.starts_with("mutant.safetensors"),
            "error does not name the file: {msg}"
        );
        msg
    };
    let r = run_mutations(
        "model_file",
        &fuzz_seeds("model_file"),
        5000,
        31,
        CAP,
        |b| {
            let single = flare_model::file::from_bytes(b, origin).map_err(|e| named(e.to_string()));
            let two = Model::from_bytes(b, origin).map_err(|e| named(e.to_string()));
            // Either reader accepting the input counts as read.
            match (single, two) {
                (Err(e), Err(_)) => Err(e),
                _ => Ok(()),
            }
        },
    );
    assert!(r.ok > r.inputs / 50 && r.err > r.inputs / 4, "{r:?}");
}

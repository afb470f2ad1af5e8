//! Deterministic mutation testing of the file readers ("hostile input"), the CI side of the
//! coverage-guided fuzzing in `fuzz/`.
//!
//! [`Mutator`] derives inputs from seed files with a seeded RNG (the same inputs on every run
//! and machine): bit flips, bytes set to 0x00/0xFF/0x7F/0x80, integer and float fields set to
//! extremes (length fields, counts, offsets, `vox_offset` 1e30), truncation, insertion,
//! deletion and duplication. [`run_mutations`] feeds them to a reader and fails the test on any
//! panic or, with [`CappedAlloc`] as the test binary's global allocator, on any allocation
//! larger than the cap (an allocation sized from the file that skipped the memory check).
//! Failing inputs are written to `target/mutation-failures/` for replay.

// The allocator below must implement `GlobalAlloc`, an unsafe trait; it only forwards to
// `System` and counts sizes.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::atomic::{AtomicUsize, Ordering},
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One change made to an input (kept to describe a failing input).
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Bit `bit` of byte `offset` inverted.
    FlipBit {
        /// Byte offset.
        offset: usize,
        /// Bit (0-7).
        bit: u8,
    },
    /// Byte `offset` set to `value` (one of 0x00, 0xFF, 0x7F, 0x80, or random).
    SetByte {
        /// Byte offset.
        offset: usize,
        /// New value.
        value: u8,
    },
    /// A field of `bytes.len()` bytes at `offset` overwritten with an extreme value.
    SetField {
        /// Byte offset.
        offset: usize,
        /// The bytes written (an extreme integer or float, either byte order).
        bytes: Vec<u8>,
    },
    /// The input cut to `len` bytes.
    Truncate {
        /// New length.
        len: usize,
    },
    /// `bytes` inserted at `offset`.
    Insert {
        /// Byte offset.
        offset: usize,
        /// Inserted bytes.
        bytes: Vec<u8>,
    },
    /// `len` bytes removed at `offset`.
    Delete {
        /// Byte offset.
        offset: usize,
        /// Bytes removed.
        len: usize,
    },
    /// `len` bytes from `from` copied over the bytes at `to` (chunk shuffling).
    Copy {
        /// Source offset.
        from: usize,
        /// Destination offset.
        to: usize,
        /// Bytes copied.
        len: usize,
    },
}

/// Extreme values for a field of 2, 4 or 8 bytes: limits of signed and unsigned integers,
/// and for 4 and 8 bytes, floats that readers must not turn into sizes (1e30, NaN, infinities).
fn extremes(width: usize) -> Vec<Vec<u8>> {
    let ints: [u64; 8] = [
        0,
        1,
        u64::MAX,
        u64::MAX >> 1,
        1 << 63,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
    ];
    let mut out: Vec<Vec<u8>> = ints
        .iter()
        .map(|v| v.to_le_bytes()[..width].to_vec())
        .collect();
    match width {
        2 => out.extend([0x7fffu16, 0x8000, 0xffff].map(|v| v.to_le_bytes().to_vec())),
        4 => out.extend(
            [1e30f32, -1e30, f32::NAN, f32::INFINITY, -1.0, 4e9, 1e-30]
                .map(|v| v.to_le_bytes().to_vec()),
        ),
        _ => out.extend(
            [1e300f64, f64::NAN, f64::NEG_INFINITY, 1e30, -1.0].map(|v| v.to_le_bytes().to_vec()),
        ),
    }
    out
}

/// A seeded source of mutated inputs.
pub struct Mutator {
    rng: ChaCha8Rng,
    /// Offsets below this are chosen more often: headers hold the sizes and offsets.
    hot: usize,
}

impl Mutator {
    /// A mutator whose output depends only on `seed` (and the seeds given to it).
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            hot: 1024,
        }
    }

    /// An offset into `len` bytes (`len` > 0), biased towards the first [`Mutator::hot`]
    /// bytes.
    fn offset(&mut self, len: usize) -> usize {
        if self.rng.random_bool(0.6) {
            self.rng.random_range(0..len.min(self.hot))
        } else {
            self.rng.random_range(0..len)
        }
    }

    /// One to four stacked mutations of `seed`, and what they were.
    pub fn mutate(&mut self, seed: &[u8]) -> (Vec<u8>, Vec<Mutation>) {
        let mut data = seed.to_vec();
        let mut done = Vec::new();
        let n = self.rng.random_range(1..=4);
        for _ in 0..n {
            if let Some(m) = self.one(&mut data) {
                done.push(m);
            }
        }
        (data, done)
    }

    /// Applies one random mutation; `None` when none applies (an empty input only grows).
    fn one(&mut self, data: &mut Vec<u8>) -> Option<Mutation> {
        let len = data.len();
        if len == 0 {
            let bytes: Vec<u8> = (0..self.rng.random_range(1..16))
                .map(|_| self.rng.random())
                .collect();
            data.extend_from_slice(&bytes);
            return Some(Mutation::Insert { offset: 0, bytes });
        }
        Some(match self.rng.random_range(0..9) {
            0 | 1 => {
                let (offset, bit) = (self.offset(len), self.rng.random_range(0..8));
                data[offset] ^= 1 << bit;
                Mutation::FlipBit { offset, bit }
            }
            2 => {
                let offset = self.offset(len);
                let value = match self.rng.random_range(0..5) {
                    0 => 0x00,
                    1 => 0xFF,
                    2 => 0x7F,
                    3 => 0x80,
                    _ => self.rng.random(),
                };
                data[offset] = value;
                Mutation::SetByte { offset, value }
            }
            3 | 4 => {
                let width = [2, 4, 8][self.rng.random_range(0..3)];
                if len < width {
                    return None;
                }
                // Aligned most of the time, as header fields are.
                let mut offset = self.offset(len - width + 1);
                if self.rng.random_bool(0.8) {
                    offset -= offset % width;
                }
                let choices = extremes(width);
                let mut bytes = choices[self.rng.random_range(0..choices.len())].clone();
                if self.rng.random_bool(0.25) {
                    bytes.reverse(); // big-endian files (NIfTI, DICOM explicit big endian)
                }
                data[offset..offset + width].copy_from_slice(&bytes);
                Mutation::SetField { offset, bytes }
            }
            5 => {
                let new_len = if self.rng.random_bool(0.5) {
                    self.offset(len)
                } else {
                    len - self.rng.random_range(1..=len.min(64))
                };
                data.truncate(new_len);
                Mutation::Truncate { len: new_len }
            }
            6 => {
                let offset = self.rng.random_range(0..=len);
                let n = self.rng.random_range(1..=32);
                let bytes: Vec<u8> = if self.rng.random_bool(0.5) {
                    (0..n).map(|_| self.rng.random()).collect()
                } else {
                    let from = self.rng.random_range(0..len);
                    data[from..(from + n).min(len)].to_vec()
                };
                data.splice(offset..offset, bytes.iter().copied());
                Mutation::Insert { offset, bytes }
            }
            7 => {
                let offset = self.offset(len);
                let n = self.rng.random_range(1..=(len - offset).min(64));
                data.drain(offset..offset + n);
                Mutation::Delete { offset, len: n }
            }
            _ => {
                let (from, to) = (self.offset(len), self.offset(len));
                let n = self.rng.random_range(1..=64).min(len - from).min(len - to);
                data.copy_within(from..from + n, to);
                Mutation::Copy { from, to, len: n }
            }
        })
    }
}

/// The committed seed corpus of fuzz target `target` (`fuzz/seeds/<target>/`, written by
/// `fuzz/src/bin/make_seeds.rs`), in file-name order; the CI mutation tests start from the
/// same inputs as afl.
pub fn fuzz_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = crate::workspace_root()
        .join("fuzz")
        .join("seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("seed entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect();
    assert!(!seeds.is_empty(), "{}: no seeds", dir.display());
    seeds
}

/// Largest single allocation requested since the last [`reset_largest_allocation`].
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// A global allocator for mutation tests: forwards to the system allocator, records the
/// largest request, and refuses (returns null) requests above its cap so that an allocation
/// sized from a hostile file cannot take the machine's memory. Install it in the test binary:
/// `#[global_allocator] static A: CappedAlloc = CappedAlloc::new(96 << 20);`
pub struct CappedAlloc {
    cap: usize,
}

impl CappedAlloc {
    /// An allocator refusing single requests above `cap` bytes.
    pub const fn new(cap: usize) -> CappedAlloc {
        CappedAlloc { cap }
    }

    fn note(&self, size: usize) -> bool {
        LARGEST.fetch_max(size, Ordering::Relaxed);
        size <= self.cap
    }
}

// SAFETY: every call forwards to `System` with the caller's arguments, or returns null, which
// `GlobalAlloc` allows to signal failure.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.note(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The largest single allocation requested since the last reset (only counted when
/// [`CappedAlloc`] is the global allocator).
pub fn largest_allocation() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

/// Starts a new count for [`largest_allocation`].
pub fn reset_largest_allocation() {
    LARGEST.store(0, Ordering::Relaxed);
}

/// What [`run_mutations`] saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MutationReport {
    /// Inputs read.
    pub inputs: usize,
    /// Inputs the reader accepted.
    pub ok: usize,
    /// Inputs the reader refused with an error.
    pub err: usize,
}

/// Reads `count` mutants of `seeds` (round robin, RNG seeded with `rng_seed`) with `read`,
/// which returns the reader's error message on refusal. Panics, after trying every input, if
/// any input made the reader panic, or requested a single allocation above `max_alloc` bytes
/// (needs [`CappedAlloc`] installed), or gave an empty error message; the first few failing
/// inputs are written to `target/mutation-failures/<name>-<case>.bin`, and the input being read
/// to `<name>-last.bin` (removed at the end), which names the culprit when a reader aborts the
/// whole process.
pub fn run_mutations(
    name: &str,
    seeds: &[Vec<u8>],
    count: usize,
    rng_seed: u64,
    max_alloc: usize,
    mut read: impl FnMut(&[u8]) -> Result<(), String>,
) -> MutationReport {
    assert!(!seeds.is_empty(), "{name}: no seed inputs");
    let mut mutator = Mutator::new(rng_seed);
    let mut report = MutationReport::default();
    let mut failures = Vec::new();
    let dir = crate::workspace_root()
        .join("target")
        .join("mutation-failures");
    let _ = std::fs::create_dir_all(&dir);
    let last = dir.join(format!("{name}-last.bin"));
    for case in 0..count {
        let seed = &seeds[case % seeds.len()];
        // Every tenth input is a seed itself, so that the readers' success paths stay covered.
        let (input, what) = if case % 10 == 0 {
            (seed.clone(), Vec::new())
        } else {
            mutator.mutate(seed)
        };
        // Kept until the input returns: if the reader aborts the process (an allocation the
        // cap refused, a stack overflow), this file is the input that did it.
        let _ = std::fs::write(&last, &input);
        reset_largest_allocation();
        let outcome = catch_unwind(AssertUnwindSafe(|| read(&input)));
        let largest = largest_allocation();
        let problem = match outcome {
            Err(p) => Some(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string payload)")
            )),
            Ok(_) if largest > max_alloc => Some(format!(
                "requested {largest} bytes in one allocation (cap {max_alloc})"
            )),
            Ok(Err(msg)) if msg.trim().is_empty() => Some("empty error message".into()),
            Ok(Ok(())) => {
                report.ok += 1;
                None
            }
            Ok(Err(_)) => {
                report.err += 1;
                None
            }
        };
        report.inputs += 1;
        if let Some(problem) = problem {
            let file = dir.join(format!("{name}-{case}.bin"));
            if failures.len() < 5 {
                let _ = std::fs::write(&file, &input);
            }
            failures.push(format!(
                "case {case} (seed {}, {what:?}): {problem} [{}]",
                case % seeds.len(),
                file.display()
            ));
        }
    }
    let _ = std::fs::remove_file(&last);
    eprintln!(
        "{name}: {} inputs, {} read, {} refused with an error, {} failures",
        report.inputs,
        report.ok,
        report.err,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {count} inputs failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_inputs_and_every_kind_occurs() {
        let seed: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        let (mut a, mut b) = (Mutator::new(7), Mutator::new(7));
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let (x, mx) = a.mutate(&seed);
            let (y, my) = b.mutate(&seed);
            assert_eq!((&x, &mx), (&y, &my));
            for m in mx {
                kinds.insert(format!("{m:?}").split([' ', '{']).next().map(str::to_owned));
            }
        }
        assert_eq!(kinds.len(), 7, "{kinds:?}");
        let (c, _) = Mutator::new(8).mutate(&seed);
        let (d, _) = Mutator::new(7).mutate(&seed);
        assert!(c != d || c.len() != seed.len());
    }

    #[test]
    fn a_panicking_reader_fails_the_run() {
        let r = catch_unwind(|| {
            run_mutations("selftest", &[vec![1, 2, 3, 4]], 20, 1, usize::MAX, |b| {
                if b.len() != 4 {
                    panic!("boom");
                }
                Ok(())
            })
        });
        assert!(r.is_err());
        let ok = run_mutations("selftest-ok", &[vec![1, 2, 3, 4]], 20, 1, usize::MAX, |b| {
            if b == [1, 2, 3, 4] {
                Ok(())
            } else {
                Err("refused".into())
            }
        });
        assert_eq!(ok.inputs, 20);
        assert!(ok.ok >= 2 && ok.err >= 1, "{ok:?}");
    }
}

//! Portable FMA-chain loop (one lane per chain).

use super::CHAINS;

/// 12 chains of `a = a * m + c`, `iters` rounds.
pub(super) fn run(iters: u64, seed: f32) -> f32 {
    let mut a = [seed; CHAINS];
    let (m, c) = (
        std::hint::black_box(0.999_9f32),
        std::hint::black_box(1e-4f32),
    );
    for _ in 0..iters {
        for x in a.iter_mut() {
            *x = *x * m + c;
        }
    }
    a.iter().sum()
}

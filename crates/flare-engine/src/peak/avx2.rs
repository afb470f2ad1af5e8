//! AVX2+FMA FMA-chain loop: 12 ymm accumulators.

use std::arch::x86_64::*;

use super::CHAINS;

/// 12 chains of `a = a * m + c` on 8 lanes, `iters` rounds.
pub(super) fn run(iters: u64, seed: f32) -> f32 {
    // SAFETY: only called for a `Ctx` holding `Isa::Avx2`, built after `avx2` and `fma` were
    // detected; the loop touches no memory.
    unsafe { run_impl(iters, seed) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run_impl(iters: u64, seed: f32) -> f32 {
    let m = _mm256_set1_ps(std::hint::black_box(0.999_9));
    let c = _mm256_set1_ps(std::hint::black_box(1e-4));
    let mut a = [_mm256_set1_ps(seed); CHAINS];
    for _ in 0..iters {
        for x in a.iter_mut() {
            *x = _mm256_fmadd_ps(*x, m, c);
        }
    }
    let mut s = _mm256_setzero_ps();
    for x in a {
        s = _mm256_add_ps(s, x);
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds exactly 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
    lanes.iter().sum()
}

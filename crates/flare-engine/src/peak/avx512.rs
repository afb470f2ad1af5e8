//! AVX-512F FMA-chain loop: 12 zmm accumulators.

use std::arch::x86_64::*;

use super::CHAINS;

/// 12 chains of `a = a * m + c` on 16 lanes, `iters` rounds.
pub(super) fn run(iters: u64, seed: f32) -> f32 {
    // SAFETY: only called for a `Ctx` holding `Isa::Avx512`, built after `avx512f` was
    // detected; the loop touches no memory.
    unsafe { run_impl(iters, seed) }
}

#[target_feature(enable = "avx512f")]
unsafe fn run_impl(iters: u64, seed: f32) -> f32 {
    let m = _mm512_set1_ps(std::hint::black_box(0.999_9));
    let c = _mm512_set1_ps(std::hint::black_box(1e-4));
    let mut a = [_mm512_set1_ps(seed); CHAINS];
    for _ in 0..iters {
        for x in a.iter_mut() {
            *x = _mm512_fmadd_ps(*x, m, c);
        }
    }
    let mut s = _mm512_setzero_ps();
    for x in a {
        s = _mm512_add_ps(s, x);
    }
    _mm512_reduce_add_ps(s)
}

//! AVX512-BF16 version of the weight-gradient micro-kernel, on sliding pairs (see the module
//! doc): per voxel pair, one load of 16 gradient words (lanes = output channels, each holding the
//! pair's two gradients) feeds one `vdpbf16ps` per input channel, whose pair of input values the
//! instruction broadcasts from memory itself; 16 input channels x 16 output channels in 16 zmm
//! accumulators, or 8 x 32 in two blocks. The fp32 kernel's loop, with half the iterations and
//! twice the multiply-adds per instruction.
//!
//! Every output is summed in the portable reference's order (segments, voxel pairs, second voxel
//! then first), so the two agree bit for bit except for fp32 denormals (flushed here).

use std::arch::{asm, x86_64::*};

use super::{BLOCK, WTile};

/// See [`super::run_bf16`].
pub(super) fn run(t: &WTile<u32>, acc: &mut [f32], acc_rstride: usize) {
    // SAFETY: a `Ctx` holding `Bf16Kernel::Avx512Bf16` is only built after avx512f and
    // avx512bf16 were detected, and `super::run_bf16` checked every input, gradient and
    // accumulator offset touched here.
    unsafe {
        if t.nco > BLOCK {
            run_wide(t, acc.as_mut_ptr(), acc_rstride)
        } else {
            run_narrow(t, acc.as_mut_ptr(), acc_rstride)
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn run_narrow(t: &WTile<u32>, acc: *mut f32, rs: usize) {
    let mut r0 = 0;
    // SAFETY (all calls): rows `r0..r0 + M <= nci`, same contract as `run`.
    unsafe {
        while r0 + 16 <= t.nci {
            tile::<16, false>(t, r0, acc, rs);
            r0 += 16;
        }
        match t.nci - r0 {
            1 => tile::<1, false>(t, r0, acc, rs),
            2 => tile::<2, false>(t, r0, acc, rs),
            3 => tile::<3, false>(t, r0, acc, rs),
            4 => tile::<4, false>(t, r0, acc, rs),
            5 => tile::<5, false>(t, r0, acc, rs),
            6 => tile::<6, false>(t, r0, acc, rs),
            7 => tile::<7, false>(t, r0, acc, rs),
            8 => tile::<8, false>(t, r0, acc, rs),
            9 => tile::<9, false>(t, r0, acc, rs),
            10 => tile::<10, false>(t, r0, acc, rs),
            11 => tile::<11, false>(t, r0, acc, rs),
            12 => tile::<12, false>(t, r0, acc, rs),
            13 => tile::<13, false>(t, r0, acc, rs),
            14 => tile::<14, false>(t, r0, acc, rs),
            15 => tile::<15, false>(t, r0, acc, rs),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn run_wide(t: &WTile<u32>, acc: *mut f32, rs: usize) {
    let mut r0 = 0;
    // SAFETY (all calls): rows `r0..r0 + M <= nci`, same contract as `run`.
    unsafe {
        while r0 + 8 <= t.nci {
            tile::<8, true>(t, r0, acc, rs);
            r0 += 8;
        }
        match t.nci - r0 {
            1 => tile::<1, true>(t, r0, acc, rs),
            2 => tile::<2, true>(t, r0, acc, rs),
            3 => tile::<3, true>(t, r0, acc, rs),
            4 => tile::<4, true>(t, r0, acc, rs),
            5 => tile::<5, true>(t, r0, acc, rs),
            6 => tile::<6, true>(t, r0, acc, rs),
            7 => tile::<7, true>(t, r0, acc, rs),
            _ => {}
        }
    }
}

/// Input channels `r0..r0 + M` against one output block (`WIDE == false`, `nco <= 16`) or two
/// (`WIDE`, `16 < nco <= 32`).
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn tile<const M: usize, const WIDE: bool>(
    t: &WTile<u32>,
    r0: usize,
    acc: *mut f32,
    rs: usize,
) {
    let (xs, gs) = (t.x_vstride, t.g_vstride);
    let nlo = t.nco.min(BLOCK);
    let m0: __mmask16 = ((1u32 << nlo) - 1) as u16;
    let m1: __mmask16 = ((1u32 << (t.nco - nlo)) - 1) as u16;
    // SAFETY: accumulator rows `r0 + r < nci` span 16 lanes (32 when `WIDE`: `nco > 16` pads to
    // two blocks), checked in `super::run_bf16`. For every segment and voxel `v < nv` (pairs
    // start at even `v`), the input words read are `xo + v * xs + r0 + r` with `r < M`,
    // `r0 + M <= nci`, and the gradient loads are masked to the `nco` words at
    // `g_shift + go + v * gs`: all checked there. The pointers step past a segment's end with
    // `wrapping_add` and are not read there.
    unsafe {
        let mut a0 = [_mm512_setzero_ps(); M];
        let mut a1 = [_mm512_setzero_ps(); M];
        for r in 0..M {
            a0[r] = _mm512_loadu_ps(acc.add((r0 + r) * rs));
            if WIDE {
                a1[r] = _mm512_loadu_ps(acc.add((r0 + r) * rs + BLOCK));
            }
        }
        // A lone last voxel: its partner's gradient (the high half of each word) reads as zero.
        let low_half = _mm512_set1_epi32(0xffff);
        for &(xo, go) in t.segs {
            let mut xp = t.x.as_ptr().add(xo + r0);
            let mut gp = t.g.as_ptr().add(t.g_shift + go);
            let mut v = 0;
            while v < t.nv {
                let mut g0 = _mm512_maskz_loadu_epi32(m0, gp.cast());
                let mut g1 = if WIDE {
                    _mm512_maskz_loadu_epi32(m1, gp.add(BLOCK).cast())
                } else {
                    _mm512_setzero_si512()
                };
                if v + 1 == t.nv {
                    g0 = _mm512_and_si512(g0, low_half);
                    g1 = _mm512_and_si512(g1, low_half);
                }
                let (g0, g1) = (_mm512_castsi512_ps(g0), _mm512_castsi512_ps(g1));
                for r in 0..M {
                    let p = xp.add(r);
                    dpbf16_bcast(&mut a0[r], g0, p);
                    if WIDE {
                        dpbf16_bcast(&mut a1[r], g1, p);
                    }
                }
                xp = xp.wrapping_add(2 * xs);
                gp = gp.wrapping_add(2 * gs);
                v += 2;
            }
        }
        for r in 0..M {
            _mm512_storeu_ps(acc.add((r0 + r) * rs), a0[r]);
            if WIDE {
                _mm512_storeu_ps(acc.add((r0 + r) * rs + BLOCK), a1[r]);
            }
        }
    }
}

/// `acc += dot-pairs(broadcast(*x), w)` with the broadcast inside `vdpbf16ps` (see the forward
/// kernel's twin for why this is `asm!`).
///
/// # Safety
/// The CPU must have avx512f and avx512bf16, and `x` must point at a readable `u32`.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn dpbf16_bcast(acc: &mut __m512, w: __m512, x: *const u32) {
    // SAFETY: the caller guarantees the features and that the 4 bytes at `x` are readable; the
    // instruction reads exactly those and writes only `acc`.
    unsafe {
        asm!(
            "vdpbf16ps {acc}, {w}, dword ptr [{x}]{{1to16}}",
            acc = inout(zmm_reg) *acc,
            w = in(zmm_reg) w,
            x = in(reg) x,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
}

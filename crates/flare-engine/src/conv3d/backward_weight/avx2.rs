//! AVX2+FMA version of the weight-gradient micro-kernel: 6 input channels x 16 output channels
//! (two ymm each), 12 accumulators; per voxel two masked gradient loads feed 12 FMAs.

use std::arch::x86_64::*;

use super::{BLOCK, WTile};

/// Input channels per register tile.
const MR: usize = 6;

/// See [`super::run`].
pub(super) fn run(t: &WTile, acc: &mut [f32], acc_rstride: usize) {
    // SAFETY: a `Ctx` holding `Isa::Avx2` is only built after `avx2` and `fma` were detected,
    // and `super::run` checked every input, gradient and accumulator offset touched here.
    unsafe { run_impl(t, acc.as_mut_ptr(), acc_rstride) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run_impl(t: &WTile, acc: *mut f32, rs: usize) {
    let mut lanes = [0i32; BLOCK];
    for (i, l) in lanes.iter_mut().enumerate() {
        *l = if i < t.nco { -1 } else { 0 };
    }
    // SAFETY: `lanes` has 16 i32, read as two 8-lane vectors.
    let (m0, m1) = unsafe {
        (
            _mm256_loadu_si256(lanes.as_ptr().cast()),
            _mm256_loadu_si256(lanes.as_ptr().add(8).cast()),
        )
    };
    let mut r0 = 0;
    // SAFETY (all calls): rows `r0..r0 + M <= nci`, same contract as `run`.
    unsafe {
        while r0 + MR <= t.nci {
            tile::<MR>(t, r0, acc, rs, m0, m1);
            r0 += MR;
        }
        match t.nci - r0 {
            1 => narrow::<1>(t, r0, acc, rs, m0, m1),
            2 => narrow::<2>(t, r0, acc, rs, m0, m1),
            3 => tile::<3>(t, r0, acc, rs, m0, m1),
            4 => tile::<4>(t, r0, acc, rs, m0, m1),
            5 => tile::<5>(t, r0, acc, rs, m0, m1),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const M: usize>(
    t: &WTile,
    r0: usize,
    acc: *mut f32,
    rs: usize,
    m0: __m256i,
    m1: __m256i,
) {
    let (xs, gs) = (t.x_vstride, t.g_vstride);
    // SAFETY: accumulator rows `r0 + r < nci` span 16 lanes; for every segment, input reads
    // are `xo + v * xs + r0 + r < x.len()` and gradient loads are masked to the first `nco`
    // lanes at `g_shift + go + v * gs`, `v < nv`: all checked in `super::run`.
    unsafe {
        let mut a0 = [_mm256_setzero_ps(); M];
        let mut a1 = [_mm256_setzero_ps(); M];
        for r in 0..M {
            a0[r] = _mm256_loadu_ps(acc.add((r0 + r) * rs));
            a1[r] = _mm256_loadu_ps(acc.add((r0 + r) * rs + 8));
        }
        for &(xo, go) in t.segs {
            // Walk both pointers so loads are base + constant, not indexed (see avx512.rs).
            let mut xp = t.x.as_ptr().add(xo + r0);
            let mut gp = t.g.as_ptr().add(t.g_shift + go);
            for _ in 0..t.nv {
                let g0 = _mm256_maskload_ps(gp, m0);
                // The upper half may lie past the slice when nco <= 8; its mask is then all
                // zero and a masked-off lane is never accessed, so only form the address.
                let g1 = _mm256_maskload_ps(gp.wrapping_add(8), m1);
                for r in 0..M {
                    let b = _mm256_broadcast_ss(&*xp.add(r));
                    a0[r] = _mm256_fmadd_ps(b, g0, a0[r]);
                    a1[r] = _mm256_fmadd_ps(b, g1, a1[r]);
                }
                xp = xp.wrapping_add(xs);
                gp = gp.wrapping_add(gs);
            }
        }
        for r in 0..M {
            _mm256_storeu_ps(acc.add((r0 + r) * rs), a0[r]);
            _mm256_storeu_ps(acc.add((r0 + r) * rs + 8), a1[r]);
        }
    }
}

/// One or two input channels: voxels are dealt round-robin to 3 accumulator sets so the
/// FMA chains do not serialise on latency.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn narrow<const M: usize>(
    t: &WTile,
    r0: usize,
    acc: *mut f32,
    rs: usize,
    m0: __m256i,
    m1: __m256i,
) {
    let (xs, gs) = (t.x_vstride, t.g_vstride);
    // SAFETY: as in `tile`: rows `r0 + r < nci`, voxels `v < nv`, masked gradient loads whose
    // masked-off upper half is never accessed.
    unsafe {
        let mut a0 = [[_mm256_setzero_ps(); M]; 3];
        let mut a1 = [[_mm256_setzero_ps(); M]; 3];
        for r in 0..M {
            a0[0][r] = _mm256_loadu_ps(acc.add((r0 + r) * rs));
            a1[0][r] = _mm256_loadu_ps(acc.add((r0 + r) * rs + 8));
        }
        for &(xo, go) in t.segs {
            let xb = t.x.as_ptr().add(xo + r0);
            let gb = t.g.as_ptr().add(t.g_shift + go);
            let mut v = 0;
            while v + 3 <= t.nv {
                for s in 0..3 {
                    let g0 = _mm256_maskload_ps(gb.add((v + s) * gs), m0);
                    let g1 = _mm256_maskload_ps(gb.wrapping_add((v + s) * gs + 8), m1);
                    let xv = xb.add((v + s) * xs);
                    for r in 0..M {
                        let b = _mm256_broadcast_ss(&*xv.add(r));
                        a0[s][r] = _mm256_fmadd_ps(b, g0, a0[s][r]);
                        a1[s][r] = _mm256_fmadd_ps(b, g1, a1[s][r]);
                    }
                }
                v += 3;
            }
            while v < t.nv {
                let g0 = _mm256_maskload_ps(gb.add(v * gs), m0);
                let g1 = _mm256_maskload_ps(gb.wrapping_add(v * gs + 8), m1);
                let xv = xb.add(v * xs);
                for r in 0..M {
                    let b = _mm256_broadcast_ss(&*xv.add(r));
                    a0[0][r] = _mm256_fmadd_ps(b, g0, a0[0][r]);
                    a1[0][r] = _mm256_fmadd_ps(b, g1, a1[0][r]);
                }
                v += 1;
            }
        }
        for r in 0..M {
            let s0 = _mm256_add_ps(_mm256_add_ps(a0[0][r], a0[1][r]), a0[2][r]);
            let s1 = _mm256_add_ps(_mm256_add_ps(a1[0][r], a1[1][r]), a1[2][r]);
            _mm256_storeu_ps(acc.add((r0 + r) * rs), s0);
            _mm256_storeu_ps(acc.add((r0 + r) * rs + 8), s1);
        }
    }
}

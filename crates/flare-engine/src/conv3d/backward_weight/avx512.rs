//! AVX-512F version of the weight-gradient micro-kernel: up to 16 input channels x 16 output
//! channels in 16 zmm accumulators; per voxel one (masked) gradient load feeds up to 16 FMAs.

use std::arch::x86_64::*;

use super::{BLOCK, WTile};

/// Input channels per register tile.
const MR: usize = 16;

/// See [`super::run`].
pub(super) fn run(t: &WTile, acc: &mut [f32], acc_rstride: usize) {
    // SAFETY: a `Ctx` holding `Isa::Avx512` is only built after `avx512f` was detected, and
    // `super::run` checked every input, gradient and accumulator offset touched here.
    unsafe {
        if t.nco > BLOCK {
            run_wide(t, acc.as_mut_ptr(), acc_rstride)
        } else {
            run_impl(t, acc.as_mut_ptr(), acc_rstride)
        }
    }
}

/// Two output blocks (17 to 32 channels): 8 input channels x 32 output channels in 16 zmm
/// accumulators; per voxel two gradient loads and 8 broadcasts feed 16 FMAs.
#[target_feature(enable = "avx512f")]
unsafe fn run_wide(t: &WTile, acc: *mut f32, rs: usize) {
    let m1: __mmask16 = ((1u32 << (t.nco - BLOCK)) - 1) as u16;
    let mut r0 = 0;
    // SAFETY (all calls): rows `r0..r0 + M <= nci`, same contract as `run`.
    unsafe {
        while r0 + 8 <= t.nci {
            wide::<8>(t, r0, acc, rs, m1);
            r0 += 8;
        }
        match t.nci - r0 {
            1 => wide::<1>(t, r0, acc, rs, m1),
            2 => wide::<2>(t, r0, acc, rs, m1),
            3 => wide::<3>(t, r0, acc, rs, m1),
            4 => wide::<4>(t, r0, acc, rs, m1),
            5 => wide::<5>(t, r0, acc, rs, m1),
            6 => wide::<6>(t, r0, acc, rs, m1),
            7 => wide::<7>(t, r0, acc, rs, m1),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn wide<const M: usize>(t: &WTile, r0: usize, acc: *mut f32, rs: usize, m1: __mmask16) {
    let (xs, gs) = (t.x_vstride, t.g_vstride);
    // SAFETY: accumulator rows `r0 + r < nci` span 32 lanes (checked: `nco > 16` rounds up to
    // two blocks); for every segment, input reads are `xo + v * xs + r0 + r < x.len()`, the
    // first gradient load covers 16 lanes of the `nco > 16` checked ones and the second is
    // masked to the remaining `nco - 16`.
    unsafe {
        let mut a0 = [_mm512_setzero_ps(); M];
        let mut a1 = [_mm512_setzero_ps(); M];
        for r in 0..M {
            a0[r] = _mm512_loadu_ps(acc.add((r0 + r) * rs));
            a1[r] = _mm512_loadu_ps(acc.add((r0 + r) * rs + BLOCK));
        }
        for &(xo, go) in t.segs {
            let mut xp = t.x.as_ptr().add(xo + r0);
            let mut gp = t.g.as_ptr().add(t.g_shift + go);
            let gend = gp.wrapping_add(t.nv * gs);
            while gp < gend {
                let g0 = _mm512_loadu_ps(gp);
                let g1 = _mm512_maskz_loadu_ps(m1, gp.add(BLOCK));
                for r in 0..M {
                    let b = _mm512_set1_ps(*xp.add(r));
                    a0[r] = _mm512_fmadd_ps(b, g0, a0[r]);
                    a1[r] = _mm512_fmadd_ps(b, g1, a1[r]);
                }
                xp = xp.wrapping_add(xs);
                gp = gp.wrapping_add(gs);
            }
        }
        for r in 0..M {
            _mm512_storeu_ps(acc.add((r0 + r) * rs), a0[r]);
            _mm512_storeu_ps(acc.add((r0 + r) * rs + BLOCK), a1[r]);
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn run_impl(t: &WTile, acc: *mut f32, rs: usize) {
    let mask: __mmask16 = ((1u32 << t.nco) - 1) as u16;
    let mut r0 = 0;
    // SAFETY (all calls): rows `r0..r0 + M <= nci`, same contract as `run`.
    unsafe {
        while r0 + MR <= t.nci {
            tile::<MR>(t, r0, acc, rs, mask);
            r0 += MR;
        }
        match t.nci - r0 {
            1 => narrow::<1>(t, r0, acc, rs, mask),
            2 => narrow::<2>(t, r0, acc, rs, mask),
            3 => narrow::<3>(t, r0, acc, rs, mask),
            4 => tile::<4>(t, r0, acc, rs, mask),
            5 => tile::<5>(t, r0, acc, rs, mask),
            6 => tile::<6>(t, r0, acc, rs, mask),
            7 => tile::<7>(t, r0, acc, rs, mask),
            8 => tile::<8>(t, r0, acc, rs, mask),
            9 => tile::<9>(t, r0, acc, rs, mask),
            10 => tile::<10>(t, r0, acc, rs, mask),
            11 => tile::<11>(t, r0, acc, rs, mask),
            12 => tile::<12>(t, r0, acc, rs, mask),
            13 => tile::<13>(t, r0, acc, rs, mask),
            14 => tile::<14>(t, r0, acc, rs, mask),
            15 => tile::<15>(t, r0, acc, rs, mask),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const M: usize>(t: &WTile, r0: usize, acc: *mut f32, rs: usize, mask: __mmask16) {
    let (xs, gs) = (t.x_vstride, t.g_vstride);
    // SAFETY: accumulator rows `r0 + r < nci` span 16 lanes each; for every segment, input
    // reads are `xo + v * xs + r0 + r < x.len()` and gradient loads are masked to `nco` lanes at
    // `g_shift + go + v * gs`, `v < nv`: all checked in `super::run`.
    unsafe {
        let mut a = [_mm512_setzero_ps(); M];
        for (r, ar) in a.iter_mut().enumerate() {
            *ar = _mm512_loadu_ps(acc.add((r0 + r) * rs));
        }
        for &(xo, go) in t.segs {
            // Walk both pointers so every load is base + constant (no index register: on
            // Intel an indexed load+FMA pair is split into two micro-ops).
            let mut xp = t.x.as_ptr().add(xo + r0);
            let mut gp = t.g.as_ptr().add(t.g_shift + go);
            let gend = gp.wrapping_add(t.nv * gs);
            while gp < gend {
                let gv = _mm512_maskz_loadu_ps(mask, gp);
                for (r, ar) in a.iter_mut().enumerate() {
                    *ar = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(r)), gv, *ar);
                }
                // After the last voxel these point past the row; they are never read there.
                xp = xp.wrapping_add(xs);
                gp = gp.wrapping_add(gs);
            }
        }
        for (r, ar) in a.iter().enumerate() {
            _mm512_storeu_ps(acc.add((r0 + r) * rs), *ar);
        }
    }
}

/// Few input channels (the network's first layer has one): `tile` would be 1-3 dependent FMA
/// chains, bound by latency, so the voxels are dealt round-robin to 4 accumulator sets.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn narrow<const M: usize>(t: &WTile, r0: usize, acc: *mut f32, rs: usize, mask: __mmask16) {
    let (xs, gs) = (t.x_vstride, t.g_vstride);
    // SAFETY: as in `tile`: rows `r0 + r < nci`, voxels `v < nv`, masked gradient loads.
    unsafe {
        let mut a = [[_mm512_setzero_ps(); M]; 4];
        for (r, ar) in a[0].iter_mut().enumerate() {
            *ar = _mm512_loadu_ps(acc.add((r0 + r) * rs));
        }
        for &(xo, go) in t.segs {
            let xb = t.x.as_ptr().add(xo + r0);
            let gb = t.g.as_ptr().add(t.g_shift + go);
            let mut v = 0;
            while v + 4 <= t.nv {
                for (s, set) in a.iter_mut().enumerate() {
                    let gv = _mm512_maskz_loadu_ps(mask, gb.add((v + s) * gs));
                    let xv = xb.add((v + s) * xs);
                    for (r, ar) in set.iter_mut().enumerate() {
                        *ar = _mm512_fmadd_ps(_mm512_set1_ps(*xv.add(r)), gv, *ar);
                    }
                }
                v += 4;
            }
            while v < t.nv {
                let gv = _mm512_maskz_loadu_ps(mask, gb.add(v * gs));
                let xv = xb.add(v * xs);
                for (r, ar) in a[0].iter_mut().enumerate() {
                    *ar = _mm512_fmadd_ps(_mm512_set1_ps(*xv.add(r)), gv, *ar);
                }
                v += 1;
            }
        }
        let [s0, s1, s2, s3] = a;
        for (r, (((x0, x1), x2), x3)) in s0.iter().zip(&s1).zip(&s2).zip(&s3).enumerate() {
            let s = _mm512_add_ps(_mm512_add_ps(*x0, *x1), _mm512_add_ps(*x2, *x3));
            _mm512_storeu_ps(acc.add((r0 + r) * rs), s);
        }
    }
}

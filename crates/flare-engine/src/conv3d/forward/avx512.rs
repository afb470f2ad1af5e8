//! AVX-512F version of the gather micro-kernel: 8 voxels x 16 output channels held in 8 zmm
//! accumulators; per input channel one weight load feeds 8 FMAs whose input operands are
//! broadcast straight from memory.

use std::arch::x86_64::*;

use super::Tile;

/// Voxels per register tile.
const MR: usize = 8;

/// See [`super::run`].
pub(super) fn run(t: &Tile, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    // SAFETY: a `Ctx` holding `Isa::Avx512` is only built after `avx512f` was detected, and
    // `super::run` checked that every tap, weight and output offset the tile touches (voxels
    // `0..nv`, channels `0..cin`, 16 weight lanes, `nco` output lanes) lies inside its slice.
    unsafe { run_impl(t, nv, out.as_mut_ptr(), out_vstride, nco) }
}

#[target_feature(enable = "avx512f")]
unsafe fn run_impl(t: &Tile, nv: usize, out: *mut f32, ovs: usize, nco: usize) {
    let mask: __mmask16 = ((1u32 << nco) - 1) as u16;
    let mut v0 = 0;
    // SAFETY (all calls below): same contract as `run`, tiles cover voxels `v0..v0 + M <= nv`.
    unsafe {
        while v0 + MR <= nv {
            tile::<MR>(t, v0, out, ovs, mask);
            v0 += MR;
        }
        match nv - v0 {
            1 => single(t, v0, out, ovs, mask),
            2 => tile::<2>(t, v0, out, ovs, mask),
            3 => tile::<3>(t, v0, out, ovs, mask),
            4 => tile::<4>(t, v0, out, ovs, mask),
            5 => tile::<5>(t, v0, out, ovs, mask),
            6 => tile::<6>(t, v0, out, ovs, mask),
            7 => tile::<7>(t, v0, out, ovs, mask),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const M: usize>(t: &Tile, v0: usize, out: *mut f32, ovs: usize, mask: __mmask16) {
    let xs = t.x_vstride;
    let (cin, wcs) = (t.cin, t.w_cstride);
    // SAFETY: `init` has 16 lanes; every input read is `tap.x + v * xs + ci` with
    // `v < nv`, `ci < cin`, accumulated outputs are masked loads of the `nco` lanes the stores
    // write, every weight read covers `tap.w + ci * wcs + 0..16`, and every
    // masked store writes `nco` lanes at `v * ovs`: all checked in `super::run`.
    unsafe {
        let init = _mm512_loadu_ps(t.init.as_ptr());
        let mut acc = [init; M];
        if t.accumulate {
            for (v, a) in acc.iter_mut().enumerate() {
                let old = _mm512_maskz_loadu_ps(mask, out.add((v0 + v) * ovs));
                *a = _mm512_add_ps(*a, old);
            }
        }
        for tap in t.taps {
            let xb = t.x.as_ptr().add(tap.x + v0 * xs);
            let wb = t.w.as_ptr().add(tap.w);
            for ci in 0..cin {
                let wv = _mm512_loadu_ps(wb.add(ci * wcs));
                let xc = xb.add(ci);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*xc.add(v * xs)), wv, *a);
                }
            }
        }
        for (v, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(out.add((v0 + v) * ovs), mask, *a);
        }
    }
}

/// One voxel (a row's border voxels, done one by one): a plain tile would be one dependent FMA
/// chain, bound by FMA latency, so the sum over input channels is split across 8 accumulators.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn single(t: &Tile, v0: usize, out: *mut f32, ovs: usize, mask: __mmask16) {
    let (cin, wcs) = (t.cin, t.w_cstride);
    // SAFETY: reads `tap.x + v0 * x_vstride + ci` for `ci < cin` and weights
    // `tap.w + ci * wcs + 0..16`, writes `nco` lanes at `v0 * ovs`: all inside the ranges
    // `super::run` checked.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 8];
        acc[0] = _mm512_loadu_ps(t.init.as_ptr());
        if t.accumulate {
            let old = _mm512_maskz_loadu_ps(mask, out.add(v0 * ovs));
            acc[0] = _mm512_add_ps(acc[0], old);
        }
        for tap in t.taps {
            let xb = t.x.as_ptr().add(tap.x + v0 * t.x_vstride);
            let wb = t.w.as_ptr().add(tap.w);
            let mut ci = 0;
            while ci + 8 <= cin {
                for (s, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_loadu_ps(wb.add((ci + s) * wcs));
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*xb.add(ci + s)), wv, *a);
                }
                ci += 8;
            }
            while ci < cin {
                let wv = _mm512_loadu_ps(wb.add(ci * wcs));
                acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(*xb.add(ci)), wv, acc[0]);
                ci += 1;
            }
        }
        let s01 = _mm512_add_ps(acc[0], acc[1]);
        let s23 = _mm512_add_ps(acc[2], acc[3]);
        let s45 = _mm512_add_ps(acc[4], acc[5]);
        let s67 = _mm512_add_ps(acc[6], acc[7]);
        let sum = _mm512_add_ps(_mm512_add_ps(s01, s23), _mm512_add_ps(s45, s67));
        _mm512_mask_storeu_ps(out.add(v0 * ovs), mask, sum);
    }
}

//! AVX-512F version of the gather micro-kernel: 8 voxels x 16 output channels held in 8 zmm
//! accumulators; per input channel one weight load feeds 8 FMAs whose input operands are
//! broadcast straight from memory.

use std::arch::x86_64::*;

use super::{BLOCK, Tile};

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
    // SAFETY: same contract as `run`.
    unsafe {
        // Common voxel strides as constants: the 8 broadcasts then address `x + v * XS * 4`
        // with an immediate displacement instead of an index register, which keeps each
        // load+FMA pair one fused micro-op on Intel cores.
        match t.x_vstride {
            1 => sweep::<1>(t, nv, out, ovs, mask),
            16 => sweep::<16>(t, nv, out, ovs, mask),
            32 => sweep::<32>(t, nv, out, ovs, mask),
            64 => sweep::<64>(t, nv, out, ovs, mask),
            128 => sweep::<128>(t, nv, out, ovs, mask),
            256 => sweep::<256>(t, nv, out, ovs, mask),
            _ => sweep::<0>(t, nv, out, ovs, mask),
        }
    }
}

/// All tiles of the run; `XS` is the voxel stride in `x`, or 0 to read it from the tile.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sweep<const XS: usize>(t: &Tile, nv: usize, out: *mut f32, ovs: usize, mask: __mmask16) {
    let mut v0 = 0;
    // SAFETY (all calls below): same contract as `run`, tiles cover voxels `v0..v0 + M <= nv`.
    unsafe {
        while v0 + MR <= nv {
            tile::<MR, XS>(t, v0, out, ovs, mask);
            v0 += MR;
        }
        match nv - v0 {
            1 => single(t, v0, out, ovs, mask),
            2 => pair::<2, XS>(t, v0, out, ovs, mask),
            3 => pair::<3, XS>(t, v0, out, ovs, mask),
            4 => pair::<4, XS>(t, v0, out, ovs, mask),
            5 => tile::<5, XS>(t, v0, out, ovs, mask),
            6 => tile::<6, XS>(t, v0, out, ovs, mask),
            7 => tile::<7, XS>(t, v0, out, ovs, mask),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const M: usize, const XS: usize>(
    t: &Tile,
    v0: usize,
    out: *mut f32,
    ovs: usize,
    mask: __mmask16,
) {
    let xs = if XS == 0 { t.x_vstride } else { XS };
    let cin = t.cin;
    // SAFETY: `init` has 16 lanes; every input read is `tap.x + v * xs + ci` with
    // `v < nv`, `ci < cin`, accumulated outputs are masked loads of the `nco` lanes the stores
    // write, every weight read covers `tap.w + ci * 16 + 0..16`, and every masked store writes
    // `nco` lanes at `v * ovs`: all checked in `super::run`.
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
            // Both pointers advance each input channel, so the loads need no index register.
            let mut xp = t.x.as_ptr().add(tap.x + v0 * xs);
            let mut wp = t.w.as_ptr().add(tap.w);
            let wend = wp.add(cin * BLOCK);
            while wp < wend {
                let wv = _mm512_loadu_ps(wp);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(v * xs)), wv, *a);
                }
                xp = xp.add(1);
                wp = wp.add(BLOCK);
            }
        }
        for (v, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(out.add((v0 + v) * ovs), mask, *a);
        }
    }
}

/// A short remainder of 2-4 voxels: a plain tile would have only 2-4 FMA chains, fewer than
/// the FMA latency needs, so even and odd input channels go to two accumulator sets.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pair<const M: usize, const XS: usize>(
    t: &Tile,
    v0: usize,
    out: *mut f32,
    ovs: usize,
    mask: __mmask16,
) {
    let xs = if XS == 0 { t.x_vstride } else { XS };
    // SAFETY: as in `tile`: input reads `tap.x + v * xs + ci` (`v < nv`, `ci < cin`), weight
    // reads `tap.w + ci * 16 + 0..16`, masked output loads and stores of `nco` lanes.
    unsafe {
        let init = _mm512_loadu_ps(t.init.as_ptr());
        let mut a = [init; M];
        let mut b = [_mm512_setzero_ps(); M];
        if t.accumulate {
            for (v, acc) in a.iter_mut().enumerate() {
                let old = _mm512_maskz_loadu_ps(mask, out.add((v0 + v) * ovs));
                *acc = _mm512_add_ps(*acc, old);
            }
        }
        for tap in t.taps {
            let mut xp = t.x.as_ptr().add(tap.x + v0 * xs);
            let mut wp = t.w.as_ptr().add(tap.w);
            let wend = wp.add(t.cin * BLOCK);
            let wend2 = wp.add((t.cin & !1) * BLOCK);
            while wp < wend2 {
                let w0 = _mm512_loadu_ps(wp);
                let w1 = _mm512_loadu_ps(wp.add(BLOCK));
                for v in 0..M {
                    a[v] = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(v * xs)), w0, a[v]);
                    b[v] = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(v * xs + 1)), w1, b[v]);
                }
                xp = xp.add(2);
                wp = wp.add(2 * BLOCK);
            }
            if wp < wend {
                let w0 = _mm512_loadu_ps(wp);
                for (v, acc) in a.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(v * xs)), w0, *acc);
                }
            }
        }
        for v in 0..M {
            _mm512_mask_storeu_ps(out.add((v0 + v) * ovs), mask, _mm512_add_ps(a[v], b[v]));
        }
    }
}

/// One voxel (a row's border voxels, done one by one): a plain tile would be one dependent FMA
/// chain, bound by FMA latency, so the sum over input channels is split across 8 accumulators.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn single(t: &Tile, v0: usize, out: *mut f32, ovs: usize, mask: __mmask16) {
    let (cin, wcs) = (t.cin, BLOCK);
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

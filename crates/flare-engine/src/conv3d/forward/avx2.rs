//! AVX2+FMA version of the gather micro-kernel: 6 voxels x 16 output channels (two ymm each),
//! 12 accumulators; each broadcast input value feeds two FMAs.

use std::arch::x86_64::*;

use super::{BLOCK, Tile};

/// Voxels per register tile (12 accumulators + 2 weights + 1 broadcast of 16 ymm).
const MR: usize = 6;

/// See [`super::run`].
pub(super) fn run(t: &Tile, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    // SAFETY: a `Ctx` holding `Isa::Avx2` is only built after `avx2` and `fma` were detected,
    // and `super::run` checked every offset the tile touches against its slice.
    unsafe { run_impl(t, nv, out.as_mut_ptr(), out_vstride, nco) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run_impl(t: &Tile, nv: usize, out: *mut f32, ovs: usize, nco: usize) {
    let mut lanes = [0i32; BLOCK];
    for (i, l) in lanes.iter_mut().enumerate() {
        *l = if i < nco { -1 } else { 0 };
    }
    // SAFETY: `lanes` has 16 i32, read as two 8-lane vectors.
    let (m0, m1) = unsafe {
        (
            _mm256_loadu_si256(lanes.as_ptr().cast()),
            _mm256_loadu_si256(lanes.as_ptr().add(8).cast()),
        )
    };
    // SAFETY: same contract as `run`.
    unsafe {
        // Common voxel strides as constants, so the broadcasts use immediate displacements.
        match t.x_vstride {
            1 => sweep::<1>(t, nv, out, ovs, m0, m1),
            16 => sweep::<16>(t, nv, out, ovs, m0, m1),
            32 => sweep::<32>(t, nv, out, ovs, m0, m1),
            64 => sweep::<64>(t, nv, out, ovs, m0, m1),
            128 => sweep::<128>(t, nv, out, ovs, m0, m1),
            256 => sweep::<256>(t, nv, out, ovs, m0, m1),
            _ => sweep::<0>(t, nv, out, ovs, m0, m1),
        }
    }
}

/// All tiles of the run; `XS` is the voxel stride in `x`, or 0 to read it from the tile.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sweep<const XS: usize>(
    t: &Tile,
    nv: usize,
    out: *mut f32,
    ovs: usize,
    m0: __m256i,
    m1: __m256i,
) {
    let mut v0 = 0;
    // SAFETY (all calls below): same contract as `run`, tiles cover voxels `v0..v0 + M <= nv`.
    unsafe {
        while v0 + MR <= nv {
            tile::<MR, XS>(t, v0, out, ovs, m0, m1);
            v0 += MR;
        }
        match nv - v0 {
            1 => single(t, v0, out, ovs, m0, m1),
            2 => tile::<2, XS>(t, v0, out, ovs, m0, m1),
            3 => tile::<3, XS>(t, v0, out, ovs, m0, m1),
            4 => tile::<4, XS>(t, v0, out, ovs, m0, m1),
            5 => tile::<5, XS>(t, v0, out, ovs, m0, m1),
            _ => {}
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const M: usize, const XS: usize>(
    t: &Tile,
    v0: usize,
    out: *mut f32,
    ovs: usize,
    m0: __m256i,
    m1: __m256i,
) {
    let xs = if XS == 0 { t.x_vstride } else { XS };
    let cin = t.cin;
    // SAFETY: `init` has 16 lanes; input reads are `tap.x + v * xs + ci` with `v < nv`,
    // `ci < cin`; accumulated outputs are masked loads of exactly the lanes the stores write;
    // weight reads cover `tap.w + ci * 16 + 0..16`; masked stores write only the
    // first `nco` lanes at `v * ovs`: all checked in `super::run`.
    unsafe {
        let i0 = _mm256_loadu_ps(t.init.as_ptr());
        let i1 = _mm256_loadu_ps(t.init.as_ptr().add(8));
        let mut a0 = [i0; M];
        let mut a1 = [i1; M];
        if t.accumulate {
            for v in 0..M {
                let o = out.add((v0 + v) * ovs);
                a0[v] = _mm256_add_ps(a0[v], _mm256_maskload_ps(o, m0));
                a1[v] = _mm256_add_ps(a1[v], _mm256_maskload_ps(o.wrapping_add(8), m1));
            }
        }
        for tap in t.taps {
            // Walk both pointers so loads are base + constant, not indexed (see avx512.rs).
            let mut xp = t.x.as_ptr().add(tap.x + v0 * xs);
            let mut wp = t.w.as_ptr().add(tap.w);
            let wend = wp.add(cin * BLOCK);
            while wp < wend {
                let w0 = _mm256_loadu_ps(wp);
                let w1 = _mm256_loadu_ps(wp.add(8));
                for v in 0..M {
                    let xv = _mm256_broadcast_ss(&*xp.add(v * xs));
                    a0[v] = _mm256_fmadd_ps(xv, w0, a0[v]);
                    a1[v] = _mm256_fmadd_ps(xv, w1, a1[v]);
                }
                xp = xp.add(1);
                wp = wp.add(BLOCK);
            }
        }
        for v in 0..M {
            let o = out.add((v0 + v) * ovs);
            _mm256_maskstore_ps(o, m0, a0[v]);
            // Past the slice when nco <= 8, but then `m1` is all zero and nothing is written.
            _mm256_maskstore_ps(o.wrapping_add(8), m1, a1[v]);
        }
    }
}

/// One voxel (a row's border voxels, done one by one): the sum over input channels is split
/// across 4 accumulator pairs so it is not one FMA-latency-bound chain.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn single(t: &Tile, v0: usize, out: *mut f32, ovs: usize, m0: __m256i, m1: __m256i) {
    let (cin, wcs) = (t.cin, BLOCK);
    // SAFETY: reads `tap.x + v0 * x_vstride + ci` for `ci < cin` and weights
    // `tap.w + ci * wcs + 0..16`, writes the first `nco` lanes at `v0 * ovs`: all inside the
    // ranges `super::run` checked (the upper half's address is only formed, see `tile`).
    unsafe {
        let mut a0 = [_mm256_setzero_ps(); 4];
        let mut a1 = [_mm256_setzero_ps(); 4];
        a0[0] = _mm256_loadu_ps(t.init.as_ptr());
        a1[0] = _mm256_loadu_ps(t.init.as_ptr().add(8));
        if t.accumulate {
            let o = out.add(v0 * ovs);
            a0[0] = _mm256_add_ps(a0[0], _mm256_maskload_ps(o, m0));
            a1[0] = _mm256_add_ps(a1[0], _mm256_maskload_ps(o.wrapping_add(8), m1));
        }
        for tap in t.taps {
            let xb = t.x.as_ptr().add(tap.x + v0 * t.x_vstride);
            let wb = t.w.as_ptr().add(tap.w);
            let mut ci = 0;
            while ci + 4 <= cin {
                for s in 0..4 {
                    let xv = _mm256_broadcast_ss(&*xb.add(ci + s));
                    let w = wb.add((ci + s) * wcs);
                    a0[s] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w), a0[s]);
                    a1[s] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w.add(8)), a1[s]);
                }
                ci += 4;
            }
            while ci < cin {
                let xv = _mm256_broadcast_ss(&*xb.add(ci));
                let w = wb.add(ci * wcs);
                a0[0] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w), a0[0]);
                a1[0] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w.add(8)), a1[0]);
                ci += 1;
            }
        }
        let s0 = _mm256_add_ps(_mm256_add_ps(a0[0], a0[1]), _mm256_add_ps(a0[2], a0[3]));
        let s1 = _mm256_add_ps(_mm256_add_ps(a1[0], a1[1]), _mm256_add_ps(a1[2], a1[3]));
        let o = out.add(v0 * ovs);
        _mm256_maskstore_ps(o, m0, s0);
        _mm256_maskstore_ps(o.wrapping_add(8), m1, s1);
    }
}

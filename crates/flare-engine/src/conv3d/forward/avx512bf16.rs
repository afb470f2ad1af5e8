//! AVX512-BF16 version of the gather micro-kernel: 8 voxels x 16 output channels in 8 zmm fp32
//! accumulators; per input channel pair one 64-byte weight load (16 lanes of two bf16) feeds 8
//! `vdpbf16ps`, each with the voxel's channel pair broadcast from memory, so one instruction does
//! the 32 multiply-adds that take two `vfmadd231ps` in fp32.
//!
//! Every variant sums each output in the same order (taps, then pairs, in list order), the order
//! of the portable reference, so the two agree bit for bit except where a product or sum is an
//! fp32 denormal (the instruction flushes those to zero).

use std::arch::{asm, x86_64::*};

use super::{BLOCK, Tile};

/// Voxels per register tile.
const MR: usize = 8;

/// See [`super::run_bf16`].
pub(super) fn run(t: &Tile<u32>, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    // SAFETY: a `Ctx` holding `Bf16Kernel::Avx512Bf16` is only built after avx512f and
    // avx512bf16 were detected, and `super::run_bf16` checked that every tap, weight and output
    // offset the tile touches (voxels `0..nv`, pairs `0..cin`, 16 weight words, `nco` output
    // lanes) lies inside its slice.
    unsafe { run_impl(t, nv, out.as_mut_ptr(), out_vstride, nco) }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn run_impl(t: &Tile<u32>, nv: usize, out: *mut f32, ovs: usize, nco: usize) {
    let mask: __mmask16 = ((1u32 << nco) - 1) as u16;
    // SAFETY: same contract as `run`. The voxel strides of the U-Net's layers (in words: 8 to
    // 128 channel pairs, times the stride) become constants, so the broadcasts use immediate
    // displacements.
    unsafe {
        match t.x_vstride {
            1 => sweep::<1>(t, nv, out, ovs, mask),
            8 => sweep::<8>(t, nv, out, ovs, mask),
            16 => sweep::<16>(t, nv, out, ovs, mask),
            32 => sweep::<32>(t, nv, out, ovs, mask),
            64 => sweep::<64>(t, nv, out, ovs, mask),
            128 => sweep::<128>(t, nv, out, ovs, mask),
            _ => sweep::<0>(t, nv, out, ovs, mask),
        }
    }
}

/// All tiles of the run; `XS` is the voxel stride in `x`, or 0 to read it from the tile.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn sweep<const XS: usize>(
    t: &Tile<u32>,
    nv: usize,
    out: *mut f32,
    ovs: usize,
    mask: __mmask16,
) {
    let mut v0 = 0;
    // SAFETY (all calls below): same contract as `run`, tiles cover voxels `v0..v0 + M <= nv`.
    unsafe {
        if nv == 1 {
            single(t, out, mask);
            return;
        }
        while v0 + MR <= nv {
            tile::<MR, XS>(t, v0, out, ovs, mask);
            v0 += MR;
        }
        match nv - v0 {
            1 => tile::<1, XS>(t, v0, out, ovs, mask),
            2 => tile::<2, XS>(t, v0, out, ovs, mask),
            3 => tile::<3, XS>(t, v0, out, ovs, mask),
            4 => tile::<4, XS>(t, v0, out, ovs, mask),
            5 => tile::<5, XS>(t, v0, out, ovs, mask),
            6 => tile::<6, XS>(t, v0, out, ovs, mask),
            7 => tile::<7, XS>(t, v0, out, ovs, mask),
            _ => {}
        }
    }
}

/// `M` voxels from `v0`: one accumulator each. Short tiles (the tails of 2-7 voxels) keep the
/// one-chain-per-output order rather than splitting sums over more accumulators as the fp32
/// kernel does, so that every output is summed in the reference's order; only one-voxel calls
/// split theirs ([`single`]), in an order the reference follows too.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn tile<const M: usize, const XS: usize>(
    t: &Tile<u32>,
    v0: usize,
    out: *mut f32,
    ovs: usize,
    mask: __mmask16,
) {
    let xs = if XS == 0 { t.x_vstride } else { XS };
    let cin = t.cin;
    // SAFETY: `init` has 16 lanes; every input read is the word `tap.x + v * xs + p` with
    // `v < nv`, `p < cin`; every weight read covers words `tap.w + p * 16 + 0..16`; accumulated
    // outputs are masked loads of the `nco` lanes the masked stores write at `v * ovs`: all
    // checked in `super::run_bf16`. `__m512i` and `__m512bh` are both 64-byte vectors, so the
    // transmutes only retype bits.
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
            let mut xp = t.x.as_ptr().add(tap.x + v0 * xs);
            let mut wp = t.w.as_ptr().add(tap.w);
            let wend = wp.add(cin * BLOCK);
            while wp < wend {
                let wv = _mm512_loadu_ps(wp.cast::<f32>());
                for (v, a) in acc.iter_mut().enumerate() {
                    dpbf16_bcast(a, wv, xp.add(v * xs));
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

/// A one-voxel call (a row's border voxels are called one by one): as a plain tile it would be one
/// dependent `vdpbf16ps` chain, bound by the instruction's latency, so within each tap the
/// pairs `p < cin / 8 * 8` go to 8 accumulators by `p % 8` (the rest to the first), summed as
/// `((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))` at the end: the one-voxel order of the
/// portable reference. Measured 2026-12-07 (2-vCPU AMD EPYC, 2 threads, `engine_bench` at
/// 128^3): all bf16 forward convolutions of the U-Net 0.62-0.68 s -> 0.60 s (1.64x -> 1.78x
/// fp32), the 32^3 layers most (decoder.2.conv2 27 -> 18 ms), where two border voxels per row
/// weigh most.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn single(t: &Tile<u32>, out: *mut f32, mask: __mmask16) {
    let cin = t.cin;
    // SAFETY: reads the words `tap.x + p` for `p < cin` and the weights `tap.w + p * 16 +
    // 0..16`, loads and stores `nco` output lanes at `out`: all inside
    // the ranges `super::run_bf16` checked. `__m512i` and `__m512` are both 64-byte vectors.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 8];
        acc[0] = _mm512_loadu_ps(t.init.as_ptr());
        if t.accumulate {
            let old = _mm512_maskz_loadu_ps(mask, out);
            acc[0] = _mm512_add_ps(acc[0], old);
        }
        for tap in t.taps {
            let xb = t.x.as_ptr().add(tap.x);
            let wb = t.w.as_ptr().add(tap.w);
            let mut p = 0;
            while p + 8 <= cin {
                for (s, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_loadu_ps(wb.add((p + s) * BLOCK).cast::<f32>());
                    dpbf16_bcast(a, wv, xb.add(p + s));
                }
                p += 8;
            }
            while p < cin {
                let wv = _mm512_loadu_ps(wb.add(p * BLOCK).cast::<f32>());
                dpbf16_bcast(&mut acc[0], wv, xb.add(p));
                p += 1;
            }
        }
        let s01 = _mm512_add_ps(acc[0], acc[1]);
        let s23 = _mm512_add_ps(acc[2], acc[3]);
        let s45 = _mm512_add_ps(acc[4], acc[5]);
        let s67 = _mm512_add_ps(acc[6], acc[7]);
        let sum = _mm512_add_ps(_mm512_add_ps(s01, s23), _mm512_add_ps(s45, s67));
        _mm512_mask_storeu_ps(out, mask, sum);
    }
}

/// `acc += dot-pairs(broadcast(*x), w)`: `vdpbf16ps` with the channel pair broadcast from memory
/// by the instruction itself (`{1to16}`). Written in `asm!` because LLVM (Rust 1.95) does not
/// fold `_mm512_set1_epi32(*x)` into `_mm512_dpbf16_ps` as it folds `_mm512_set1_ps` into
/// `_mm512_fmadd_ps`: it emits a separate `vbroadcastss`, which on this Zen core takes a vector
/// pipe slot. Measured 2026-12-06 on the dev VM, one thread, the kernel's inner loop alone (8
/// voxels, one weight load per pair): 100-105 GFLOP/s with the separate broadcast, 146-157 with
/// the embedded one (fp32 FMA, embedded: 75-84).
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

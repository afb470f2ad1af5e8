//! The gather micro-kernel behind the forward convolution (and, with transposed weights, the
//! gradient with respect to the input).
//!
//! One call computes `nv` output voxels of one row for one block of 16 output channels:
//!
//! `out[v * out_vstride + c] = init[c] + sum_taps sum_ci x[tap.x + v * x_vstride + ci] * w[tap.w + ci * 16 + c]`
//!
//! for `c < nco` (plus the old `out` value when accumulating). The taps (one per valid kernel position) carry precomputed offsets, so the
//! kernel knows nothing about padding, strides or which pass it serves. Summation order is the
//! same on every ISA (taps, then input channels, in list order), so the paths differ only by
//! rounding (FMA versus separate multiply and add).
//!
//! The bf16 versions ([`run_bf16`]) read `u32` words of two bf16 channels instead of f32
//! channels (`crate::bf16` documents the pairs): `cin` and every offset then count channel
//! pairs, and each output channel sums, per tap and pair in list order, the odd channel's product
//! then the even one's, each added in fp32 (the order `vdpbf16ps` uses; bf16 products are exact
//! in fp32), except that a one-voxel call splits each tap's pairs over 8 partial sums (pair `p`
//! of the first `cin / 8 * 8` into sum `p % 8`, the rest into the first) joined pairwise at the
//! end, so that a lone voxel is not one long dependent chain. The portable reference
//! (`bf16_ref.rs`) follows that order exactly.

mod bf16_ref;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512bf16;

use crate::{Bf16Kernel, Isa};

/// Output channels per kernel call: one AVX-512 register, two AVX2 registers.
pub(crate) const BLOCK: usize = 16;

/// Offsets of one kernel tap: where voxel 0's input channels start in `x`, and where this
/// tap's `[ci][co-block]` weight slab starts in `w`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tap {
    pub x: usize,
    pub w: usize,
}

/// Weight bytes one kernel pass may stream per output block before the taps are split into
/// groups: about two thirds of a 48 KiB L1, leaving room for the input rows.
const L1_WEIGHT_BUDGET: usize = 32 * 1024;

/// Everything one call reads: fp32 channels (`T = f32`) or bf16 channel pairs (`T = u32`).
#[derive(Clone, Copy)]
pub(crate) struct Tile<'a, T = f32> {
    pub x: &'a [T],
    pub w: &'a [T],
    pub taps: &'a [Tap],
    /// Elements between consecutive voxels of the tile in `x`.
    pub x_vstride: usize,
    /// Input channels (bf16: channel pairs) summed per tap.
    pub cin: usize,
    /// Starting value of each output channel (the bias, or zeros).
    pub init: &'a [f32; BLOCK],
    /// Add the output's current values to the starting value (`out += conv`), so one output
    /// can sum convolutions of several inputs (a concat that is never materialised).
    pub accumulate: bool,
}

/// Runs the tile on `isa`, writing `nv` voxels of `nco <= 16` channels into `out`.
///
/// Panics if an offset would leave its slice: the drivers compute them from checked shapes, so
/// that is a bug in the engine, never a consequence of user input. The check is what makes the
/// SIMD kernels' raw-pointer loads sound.
pub(crate) fn run(isa: Isa, t: &Tile, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    run_groups(t, nv, out, out_vstride, nco, |part, out| {
        dispatch(isa, part, nv, out, out_vstride, nco)
    });
}

/// [`run`] for bf16 channel pairs on `kernel`, with the same checks.
pub(crate) fn run_bf16(
    kernel: Bf16Kernel,
    t: &Tile<u32>,
    nv: usize,
    out: &mut [f32],
    out_vstride: usize,
    nco: usize,
) {
    run_groups(t, nv, out, out_vstride, nco, |part, out| match kernel {
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16 => avx512bf16::run(part, nv, out, out_vstride, nco),
        _ => bf16_ref::run(part, nv, out, out_vstride, nco),
    });
}

/// Checks every offset of the tile, then calls `kernel` once, or once per group of taps whose
/// weights fit in L1.
fn run_groups<T: Copy>(
    t: &Tile<T>,
    nv: usize,
    out: &mut [f32],
    out_vstride: usize,
    nco: usize,
    mut kernel: impl FnMut(&Tile<T>, &mut [f32]),
) {
    if nv == 0 {
        return;
    }
    assert!((1..=BLOCK).contains(&nco), "conv kernel: nco {nco}");
    assert!(t.cin >= 1, "conv kernel: cin 0");
    assert!(
        (nv - 1) * out_vstride + nco <= out.len(),
        "conv kernel: output out of range"
    );
    for tap in t.taps {
        assert!(
            tap.x + (nv - 1) * t.x_vstride + t.cin <= t.x.len(),
            "conv kernel: input tap out of range"
        );
        assert!(
            tap.w + t.cin * BLOCK <= t.w.len(),
            "conv kernel: weight tap out of range"
        );
    }
    // With many input channels one block's weights outgrow L1 and every register tile would
    // stream them from L2 again. Split the taps into groups whose weights fit, and sweep the
    // whole run of voxels once per group, accumulating into the output after the first.
    let group = (L1_WEIGHT_BUDGET / (t.cin * BLOCK * std::mem::size_of::<T>())).max(1);
    if t.taps.len() <= group {
        kernel(t, out);
        return;
    }
    const ZERO: [f32; BLOCK] = [0.0; BLOCK];
    for (i, taps) in t.taps.chunks(group).enumerate() {
        let part = Tile {
            taps,
            init: if i == 0 { t.init } else { &ZERO },
            accumulate: t.accumulate || i > 0,
            ..*t
        };
        kernel(&part, out);
    }
}

fn dispatch(isa: Isa, t: &Tile, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::run(t, nv, out, out_vstride, nco),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::run(t, nv, out, out_vstride, nco),
        _ => scalar::run(t, nv, out, out_vstride, nco),
    }
}

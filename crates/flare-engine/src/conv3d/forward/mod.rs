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

mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::Isa;

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

/// Everything one call reads.
#[derive(Clone, Copy)]
pub(crate) struct Tile<'a> {
    pub x: &'a [f32],
    pub w: &'a [f32],
    pub taps: &'a [Tap],
    /// Elements between consecutive voxels of the tile in `x`.
    pub x_vstride: usize,
    /// Input channels summed per tap.
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
    let group = (L1_WEIGHT_BUDGET / (t.cin * BLOCK * std::mem::size_of::<f32>())).max(1);
    if t.taps.len() <= group {
        dispatch(isa, t, nv, out, out_vstride, nco);
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
        dispatch(isa, &part, nv, out, out_vstride, nco);
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

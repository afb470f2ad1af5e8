//! The outer-product micro-kernel behind the weight gradient.
//!
//! One call accumulates, for one kernel tap, `nci` input channels by one or two blocks of 16
//! output channels (`nco <= 32`), summed over `nv` voxels of each of several row segments `(x_off, g_off)`:
//!
//! `acc[r * acc_rstride + c] += sum_seg sum_v x[x_off + v * x_vstride + r] * g[g_shift + g_off + v * g_vstride + c]`
//!
//! for `r < nci`, `c < 16` or `32`; lanes `c >= nco` of `g` read as zero, so the padded columns of the
//! accumulator stay zero. Taking all the rows of a chunk in one call keeps the accumulators in
//! registers across rows, which matters when rows are short (deep, narrow layers). Every ISA
//! sums segments and voxels in the same order.
//!
//! The bf16 versions ([`WOperands::Bf16`]) sum voxels two at a time, as `vdpbf16ps` pairs
//! them. Their operands are "sliding pairs" (`crate::bf16::sliding_pairs`): word `i` of `x`
//! holds the bf16 values of element `i` and of element `i + x_vstride` (the same channel one
//! voxel further along the segment), likewise for `g` with `g_vstride`, so every offset and
//! stride stays the fp32 one and a voxel pair is one word, whatever the tap's alignment. Per
//! segment, pair `(v, v + 1)` adds the second voxel's product, then the first's, each in fp32; a
//! lone last voxel pairs with a zero gradient. The portable reference (`bf16_ref.rs`) follows
//! that order exactly.

mod bf16_ref;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512bf16;

use crate::{Bf16Kernel, Ctx, Isa, bf16};

pub(crate) use super::forward::BLOCK;

/// Everything one call reads: fp32 (`T = f32`) or bf16 sliding pairs (`T = u32`).
#[derive(Clone, Copy)]
pub(crate) struct WTile<'a, T = f32> {
    pub x: &'a [T],
    pub x_vstride: usize,
    pub g: &'a [T],
    pub g_vstride: usize,
    /// Row segments: offsets of voxel 0 in `x` and (before `g_shift`) in `g`.
    pub segs: &'a [(usize, usize)],
    /// Added to every gradient offset (the output-channel block's first channel).
    pub g_shift: usize,
    pub nv: usize,
    pub nci: usize,
    pub nco: usize,
}

/// The shape of one call, without its operands (the drivers' side of [`WTile`]).
#[derive(Clone, Copy)]
pub(crate) struct WShape<'a> {
    pub x_vstride: usize,
    pub g_vstride: usize,
    pub segs: &'a [(usize, usize)],
    pub g_shift: usize,
    pub nv: usize,
    pub nci: usize,
    pub nco: usize,
}

/// The forward input and the output gradient of one weight-gradient pass, in the context's
/// precision: as given (fp32), or converted once to bf16 sliding pairs (see the module doc).
pub(crate) enum WOperands<'a> {
    F32 {
        isa: Isa,
        x: &'a [f32],
        g: &'a [f32],
    },
    Bf16 {
        kernel: Bf16Kernel,
        x: bf16::Pairs,
        g: bf16::Pairs,
    },
}

impl<'a> WOperands<'a> {
    /// Wraps (fp32) or converts (bf16) the operands for `ctx`; `x_vstride` and `g_vstride` are
    /// the voxel strides every call of this pass will use.
    pub(crate) fn new(
        ctx: &Ctx,
        x: &'a [f32],
        x_vstride: usize,
        g: &'a [f32],
        g_vstride: usize,
    ) -> WOperands<'a> {
        match ctx.bf16_kernel() {
            None => WOperands::F32 {
                isa: ctx.isa(),
                x,
                g,
            },
            Some(kernel) => WOperands::Bf16 {
                kernel,
                x: bf16::sliding_pairs(kernel, x, x_vstride),
                g: bf16::sliding_pairs(kernel, g, g_vstride),
            },
        }
    }

    /// Runs one call (see [`run`]).
    pub(crate) fn run(&self, s: &WShape, acc: &mut [f32], acc_rstride: usize) {
        match self {
            WOperands::F32 { isa, x, g } => {
                let t = WTile {
                    x,
                    x_vstride: s.x_vstride,
                    g,
                    g_vstride: s.g_vstride,
                    segs: s.segs,
                    g_shift: s.g_shift,
                    nv: s.nv,
                    nci: s.nci,
                    nco: s.nco,
                };
                run(*isa, &t, acc, acc_rstride);
            }
            WOperands::Bf16 { kernel, x, g } => {
                let t = WTile {
                    x: x.as_slice(),
                    x_vstride: s.x_vstride,
                    g: g.as_slice(),
                    g_vstride: s.g_vstride,
                    segs: s.segs,
                    g_shift: s.g_shift,
                    nv: s.nv,
                    nci: s.nci,
                    nco: s.nco,
                };
                run_bf16(*kernel, &t, acc, acc_rstride);
            }
        }
    }
}

/// Checks every offset the tile touches; `false` when there is nothing to do.
fn check<T>(t: &WTile<T>, acc: &[f32], acc_rstride: usize) -> bool {
    if t.nv == 0 || t.nci == 0 || t.segs.is_empty() {
        return false;
    }
    assert!(
        (1..=2 * BLOCK).contains(&t.nco),
        "weight kernel: nco {}",
        t.nco
    );
    for &(xo, go) in t.segs {
        assert!(
            xo + (t.nv - 1) * t.x_vstride + t.nci <= t.x.len(),
            "weight kernel: input out of range"
        );
        assert!(
            t.g_shift + go + (t.nv - 1) * t.g_vstride + t.nco <= t.g.len(),
            "weight kernel: gradient out of range"
        );
    }
    assert!(
        (t.nci - 1) * acc_rstride + t.nco.div_ceil(BLOCK) * BLOCK <= acc.len(),
        "weight kernel: accumulator out of range"
    );
    true
}

/// [`run`] for bf16 operands on `kernel`, with the same checks.
pub(crate) fn run_bf16(kernel: Bf16Kernel, t: &WTile<u32>, acc: &mut [f32], acc_rstride: usize) {
    if !check(t, acc, acc_rstride) {
        return;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16 => avx512bf16::run(t, acc, acc_rstride),
        _ => bf16_ref::run(t, acc, acc_rstride),
    }
}

/// Runs the tile on `isa`, adding into `acc` (rows `acc_rstride` apart, 16 lanes each).
///
/// Panics if an offset would leave its slice (an engine bug, never user input): the check is
/// what makes the SIMD kernels' raw-pointer accesses sound.
pub(crate) fn run(isa: Isa, t: &WTile, acc: &mut [f32], acc_rstride: usize) {
    if !check(t, acc, acc_rstride) {
        return;
    }
    match isa {
        // AVX-512 takes two output blocks at once: 8 input channels x 32 output channels, so
        // each broadcast input value feeds two FMAs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::run(t, acc, acc_rstride),
        _ => {
            for (k, co0) in (0..t.nco).step_by(BLOCK).enumerate() {
                let part = WTile {
                    g_shift: t.g_shift + co0,
                    nco: (t.nco - co0).min(BLOCK),
                    ..*t
                };
                let acc = &mut acc[k * BLOCK..];
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => avx2::run(&part, acc, acc_rstride),
                    _ => scalar::run(&part, acc, acc_rstride),
                }
            }
        }
    }
}

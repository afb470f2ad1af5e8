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

/// Which operand's rows each block of a weight-gradient pass owns: a convolution's blocks are
/// rows of the output gradient (each reaching neighbouring input rows through the taps), a
/// transposed convolution's are rows of its input (each reaching several gradient rows).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockOwns {
    Input,
    Gradient,
}

/// The forward input and the output gradient of one weight-gradient pass, in the context's
/// precision. In bf16 the operand the blocks do not own is converted once into sliding pairs
/// (see the module doc); the owned one is converted block by block ([`WOperands::block`]) into
/// a buffer that is still in cache when the kernel reads it. Why (2026-12-07): converting both
/// 128 MiB operands of a 128^3 layer up front wrote and re-read a full copy of each, and left
/// the bf16 weight gradient at 1.41x fp32's speed where forward reached 1.67x (`conv_bench`).
pub(crate) struct WOperands<'a> {
    x: &'a [f32],
    x_vstride: usize,
    g: &'a [f32],
    g_vstride: usize,
    owns: BlockOwns,
    precision: WPrecision,
}

enum WPrecision {
    F32(Isa),
    /// The operand the blocks do not own, as sliding pairs.
    Bf16 {
        kernel: Bf16Kernel,
        shared: bf16::Pairs,
    },
}

/// One block's operands (see [`WOperands::block`]): the owned one starts at the block.
pub(crate) enum WBlock<'s> {
    F32 {
        isa: Isa,
        x: &'s [f32],
        g: &'s [f32],
    },
    Bf16 {
        kernel: Bf16Kernel,
        x: &'s [u32],
        g: &'s [u32],
    },
}

impl<'a> WOperands<'a> {
    /// Wraps the operands for `ctx`; `x_vstride` and `g_vstride` are the voxel strides every
    /// call of this pass will use, `owns` the operand whose rows the blocks own.
    pub(crate) fn new(
        ctx: &Ctx,
        x: &'a [f32],
        x_vstride: usize,
        g: &'a [f32],
        g_vstride: usize,
        owns: BlockOwns,
    ) -> WOperands<'a> {
        let precision = match ctx.bf16_kernel() {
            None => WPrecision::F32(ctx.isa()),
            Some(kernel) => WPrecision::Bf16 {
                kernel,
                shared: match owns {
                    BlockOwns::Input => bf16::sliding_pairs(kernel, g, g_vstride),
                    BlockOwns::Gradient => bf16::sliding_pairs(kernel, x, x_vstride),
                },
            },
        };
        WOperands {
            x,
            x_vstride,
            g,
            g_vstride,
            owns,
            precision,
        }
    }

    /// The operands of a block that owns elements `range` of the owned operand: calls on it
    /// give that operand's offsets from `range.start`, the other's as they are. In bf16 the
    /// owned part is converted into `scratch` (the same words as a whole conversion).
    pub(crate) fn block<'s>(
        &'s self,
        range: std::ops::Range<usize>,
        scratch: &'s mut Vec<u32>,
    ) -> WBlock<'s> {
        match &self.precision {
            WPrecision::F32(isa) => {
                let (x, g) = match self.owns {
                    BlockOwns::Input => (&self.x[range], self.g),
                    BlockOwns::Gradient => (self.x, &self.g[range]),
                };
                WBlock::F32 { isa: *isa, x, g }
            }
            WPrecision::Bf16 { kernel, shared } => {
                let (raw, vstride) = match self.owns {
                    BlockOwns::Input => (self.x, self.x_vstride),
                    BlockOwns::Gradient => (self.g, self.g_vstride),
                };
                scratch.resize(range.len(), 0);
                bf16::sliding_into(*kernel, raw, range.start, vstride, scratch);
                let (x, g) = match self.owns {
                    BlockOwns::Input => (&scratch[..], shared.as_slice()),
                    BlockOwns::Gradient => (shared.as_slice(), &scratch[..]),
                };
                WBlock::Bf16 {
                    kernel: *kernel,
                    x,
                    g,
                }
            }
        }
    }
}

impl WShape<'_> {
    /// The call this shape describes, on operands `x` and `g`.
    fn on<'t, T>(&'t self, x: &'t [T], g: &'t [T]) -> WTile<'t, T> {
        WTile {
            x,
            x_vstride: self.x_vstride,
            g,
            g_vstride: self.g_vstride,
            segs: self.segs,
            g_shift: self.g_shift,
            nv: self.nv,
            nci: self.nci,
            nco: self.nco,
        }
    }
}

impl WBlock<'_> {
    /// Runs one call (see [`run`]).
    pub(crate) fn run(&self, s: &WShape, acc: &mut [f32], acc_rstride: usize) {
        match *self {
            WBlock::F32 { isa, x, g } => run(isa, &s.on(x, g), acc, acc_rstride),
            WBlock::Bf16 { kernel, x, g } => run_bf16(kernel, &s.on(x, g), acc, acc_rstride),
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

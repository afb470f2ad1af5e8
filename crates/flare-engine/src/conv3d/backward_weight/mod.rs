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

mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::Isa;

pub(crate) use super::forward::BLOCK;

/// Everything one call reads.
#[derive(Clone, Copy)]
pub(crate) struct WTile<'a> {
    pub x: &'a [f32],
    pub x_vstride: usize,
    pub g: &'a [f32],
    pub g_vstride: usize,
    /// Row segments: offsets of voxel 0 in `x` and (before `g_shift`) in `g`.
    pub segs: &'a [(usize, usize)],
    /// Added to every gradient offset (the output-channel block's first channel).
    pub g_shift: usize,
    pub nv: usize,
    pub nci: usize,
    pub nco: usize,
}

/// Runs the tile on `isa`, adding into `acc` (rows `acc_rstride` apart, 16 lanes each).
///
/// Panics if an offset would leave its slice (an engine bug, never user input): the check is
/// what makes the SIMD kernels' raw-pointer accesses sound.
pub(crate) fn run(isa: Isa, t: &WTile, acc: &mut [f32], acc_rstride: usize) {
    if t.nv == 0 || t.nci == 0 || t.segs.is_empty() {
        return;
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

//! The outer-product micro-kernel behind the weight gradient.
//!
//! One call accumulates, for one kernel tap, `nci` input channels by one block of 16 output
//! channels, summed over `nv` voxels of a row:
//!
//! `acc[r * acc_rstride + c] += sum_v x[x_off + v * x_vstride + r] * g[g_off + v * g_vstride + c]`
//!
//! for `r < nci`, `c < 16`; lanes `c >= nco` of `g` read as zero, so the padded columns of the
//! accumulator stay zero. Every ISA sums voxels in the same order.

mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::Isa;

pub(crate) use super::forward::BLOCK;

/// Everything one call reads.
pub(crate) struct WTile<'a> {
    pub x: &'a [f32],
    pub x_off: usize,
    pub x_vstride: usize,
    pub g: &'a [f32],
    pub g_off: usize,
    pub g_vstride: usize,
    pub nv: usize,
    pub nci: usize,
    pub nco: usize,
}

/// Runs the tile on `isa`, adding into `acc` (rows `acc_rstride` apart, 16 lanes each).
///
/// Panics if an offset would leave its slice (an engine bug, never user input): the check is
/// what makes the SIMD kernels' raw-pointer accesses sound.
pub(crate) fn run(isa: Isa, t: &WTile, acc: &mut [f32], acc_rstride: usize) {
    if t.nv == 0 || t.nci == 0 {
        return;
    }
    assert!((1..=BLOCK).contains(&t.nco), "weight kernel: nco {}", t.nco);
    assert!(
        t.x_off + (t.nv - 1) * t.x_vstride + t.nci <= t.x.len(),
        "weight kernel: input out of range"
    );
    assert!(
        t.g_off + (t.nv - 1) * t.g_vstride + t.nco <= t.g.len(),
        "weight kernel: gradient out of range"
    );
    assert!(
        (t.nci - 1) * acc_rstride + BLOCK <= acc.len(),
        "weight kernel: accumulator out of range"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::run(t, acc, acc_rstride),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::run(t, acc, acc_rstride),
        _ => scalar::run(t, acc, acc_rstride),
    }
}

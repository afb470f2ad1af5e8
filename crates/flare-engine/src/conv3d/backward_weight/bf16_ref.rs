//! Portable bf16 version of the weight-gradient micro-kernel: the reference the native bf16
//! kernel is tested against. Operands are sliding pairs of bf16 values (see the module doc);
//! products and sums are fp32, voxels taken in pairs in the order `vdpbf16ps` uses (the pair's
//! second voxel, then its first).

use super::WTile;
use crate::bf16_to_f32;

/// See [`super::run_bf16`]; bounds were checked there (and are checked again by indexing here).
pub(super) fn run(t: &WTile<u32>, acc: &mut [f32], acc_rstride: usize) {
    let lo = |w: u32| bf16_to_f32(w as u16);
    let hi = |w: u32| bf16_to_f32((w >> 16) as u16);
    for r in 0..t.nci {
        for c in 0..t.nco {
            let mut a = acc[r * acc_rstride + c];
            for &(xo, go) in t.segs {
                let mut v = 0;
                while v < t.nv {
                    let xw = t.x[xo + v * t.x_vstride + r];
                    let gw = t.g[t.g_shift + go + v * t.g_vstride + c];
                    // A lone last voxel: its partner's gradient counts as zero.
                    let g1 = if v + 1 < t.nv { hi(gw) } else { 0.0 };
                    a += hi(xw) * g1;
                    a += lo(xw) * lo(gw);
                    v += 2;
                }
            }
            acc[r * acc_rstride + c] = a;
        }
    }
}

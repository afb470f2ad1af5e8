//! Portable version of the weight-gradient micro-kernel; the reference for the SIMD paths.

use super::{BLOCK, WTile};

/// See [`super::run`].
pub(super) fn run(t: &WTile, acc: &mut [f32], acc_rstride: usize) {
    for r in 0..t.nci {
        let mut a = [0.0f32; BLOCK];
        a.copy_from_slice(&acc[r * acc_rstride..][..BLOCK]);
        for &(xo, go) in t.segs {
            for v in 0..t.nv {
                let xv = t.x[xo + v * t.x_vstride + r];
                let gs = &t.g[t.g_shift + go + v * t.g_vstride..][..t.nco];
                for (ac, &gv) in a.iter_mut().zip(gs) {
                    *ac += xv * gv;
                }
            }
        }
        acc[r * acc_rstride..][..BLOCK].copy_from_slice(&a);
    }
}

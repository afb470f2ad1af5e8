//! Portable version of the gather micro-kernel: plain loops, correct on every CPU, and the
//! reference each SIMD path is tested against.

use super::{BLOCK, Tile};

/// See [`super::run`]; bounds were checked there (and are checked again by indexing here).
pub(super) fn run(t: &Tile, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    for v in 0..nv {
        let mut acc = *t.init;
        if t.accumulate {
            for (a, &o) in acc.iter_mut().zip(&out[v * out_vstride..][..nco]) {
                *a += o;
            }
        }
        for tap in t.taps {
            let xs = &t.x[tap.x + v * t.x_vstride..][..t.cin];
            for (ci, &xv) in xs.iter().enumerate() {
                let ws = &t.w[tap.w + ci * BLOCK..][..BLOCK];
                for (a, &wv) in acc.iter_mut().zip(ws) {
                    *a += xv * wv;
                }
            }
        }
        out[v * out_vstride..][..nco].copy_from_slice(&acc[..nco]);
    }
}

//! Portable bf16 version of the gather micro-kernel: the reference the native bf16 kernels are
//! tested against, and what a bf16 context runs on a CPU without bf16 instructions when a test
//! forces it. Operands are bf16 (already rounded, to nearest even, when packed); products and
//! sums are fp32, in the order `vdpbf16ps` uses (odd channel of a pair, then even).

use super::{BLOCK, Tile};
use crate::bf16_to_f32;

/// See [`super::run_bf16`]; bounds were checked there (and are checked again by indexing here).
pub(super) fn run(t: &Tile<u32>, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    for v in 0..nv {
        let mut acc = *t.init;
        if t.accumulate {
            for (a, &o) in acc.iter_mut().zip(&out[v * out_vstride..][..nco]) {
                *a += o;
            }
        }
        for tap in t.taps {
            let xs = &t.x[tap.x + v * t.x_vstride..][..t.cin];
            for (p, &xp) in xs.iter().enumerate() {
                let (x0, x1) = (bf16_to_f32(xp as u16), bf16_to_f32((xp >> 16) as u16));
                let ws = &t.w[tap.w + p * BLOCK..][..BLOCK];
                for (a, &wp) in acc.iter_mut().zip(ws) {
                    let (w0, w1) = (bf16_to_f32(wp as u16), bf16_to_f32((wp >> 16) as u16));
                    *a += x1 * w1;
                    *a += x0 * w0;
                }
            }
        }
        out[v * out_vstride..][..nco].copy_from_slice(&acc[..nco]);
    }
}

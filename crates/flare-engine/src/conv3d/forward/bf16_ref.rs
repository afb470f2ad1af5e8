//! Portable bf16 version of the gather micro-kernel: the reference the native bf16 kernels are
//! tested against, and what a bf16 context runs on a CPU without bf16 instructions when a test
//! forces it. Operands are bf16 (already rounded, to nearest even, when packed); products and
//! sums are fp32, in the order `vdpbf16ps` uses (odd channel of a pair, then even).

use super::{BLOCK, Tile};
use crate::bf16_to_f32;

/// Accumulators of a one-voxel call (see [`super::run_bf16`]'s order).
const SPLIT: usize = 8;

/// See [`super::run_bf16`]; bounds were checked there (and are checked again by indexing here).
pub(super) fn run(t: &Tile<u32>, nv: usize, out: &mut [f32], out_vstride: usize, nco: usize) {
    // A one-voxel call sums each tap's first `cin / 8 * 8` pairs into 8 partial sums by
    // `p % 8` (the rest into the first) and joins them pairwise at the end; wider calls keep
    // one sum per output.
    let split = nv == 1;
    let whole = t.cin / SPLIT * SPLIT;
    for v in 0..nv {
        let mut acc = [[0.0f32; BLOCK]; SPLIT];
        acc[0] = *t.init;
        if t.accumulate {
            for (a, &o) in acc[0].iter_mut().zip(&out[v * out_vstride..][..nco]) {
                *a += o;
            }
        }
        for tap in t.taps {
            let xs = &t.x[tap.x + v * t.x_vstride..][..t.cin];
            for (p, &xp) in xs.iter().enumerate() {
                let (x0, x1) = (bf16_to_f32(xp as u16), bf16_to_f32((xp >> 16) as u16));
                let ws = &t.w[tap.w + p * BLOCK..][..BLOCK];
                let part = if split && p < whole { p % SPLIT } else { 0 };
                for (a, &wp) in acc[part].iter_mut().zip(ws) {
                    let (w0, w1) = (bf16_to_f32(wp as u16), bf16_to_f32((wp >> 16) as u16));
                    *a += x1 * w1;
                    *a += x0 * w0;
                }
            }
        }
        let sum: [f32; BLOCK] = if split {
            std::array::from_fn(|c| {
                let s = |i: usize| acc[i][c];
                ((s(0) + s(1)) + (s(2) + s(3))) + ((s(4) + s(5)) + (s(6) + s(7)))
            })
        } else {
            acc[0]
        };
        out[v * out_vstride..][..nco].copy_from_slice(&sum[..nco]);
    }
}

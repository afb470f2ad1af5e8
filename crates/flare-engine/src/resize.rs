//! Trilinear resizing (PyTorch's `interpolate(mode="trilinear", align_corners=False)`), forward
//! and backward.
//!
//! Trilinear interpolation is separable, so it runs as three 1D passes (w, h, d), each a gather
//! from a precomputed table of (source, weight) pairs; backward runs the transposed tables, also
//! as gathers, so every output element is written by one task in a fixed order.

use rayon::prelude::*;

use crate::{Ctx, EngineError, Result, Shape5, Tensor};

/// 1D linear interpolation from `n_in` to `n_out` samples, `align_corners=False`: for each
/// output, two sources and their weights.
fn table(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            let l1 = (src - i0 as f64) as f32;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// For each input sample, the (output, weight) pairs that read it (the transposed table).
fn transposed(n_in: usize, t: &[(usize, usize, f32, f32)]) -> Vec<Vec<(usize, f32)>> {
    let mut back = vec![Vec::new(); n_in];
    for (o, &(i0, i1, w0, w1)) in t.iter().enumerate() {
        back[i0].push((o, w0));
        back[i1].push((o, w1));
    }
    back
}

/// The layout of one axis: `outer` blocks of `len` positions of `inner` contiguous values.
fn axis_view(s: Shape5, axis: usize) -> (usize, usize, usize) {
    match axis {
        0 => (s.n, s.d, s.h * s.w * s.c),
        1 => (s.n * s.d, s.h, s.w * s.c),
        _ => (s.n * s.d * s.h, s.w, s.c),
    }
}

fn with_axis(s: Shape5, axis: usize, len: usize) -> Shape5 {
    match axis {
        0 => Shape5 { d: len, ..s },
        1 => Shape5 { h: len, ..s },
        _ => Shape5 { w: len, ..s },
    }
}

/// One forward pass along `axis` to `n_out` samples.
fn pass(x: &Tensor, axis: usize, n_out: usize) -> Result<Tensor> {
    let s = x.shape();
    let (_, n_in, inner) = axis_view(s, axis);
    let mut y = Tensor::zeros(with_axis(s, axis, n_out))?;
    if inner == 0 || y.shape().is_empty() {
        return Ok(y);
    }
    let t = table(n_in, n_out);
    y.data_mut()
        .par_chunks_mut(inner)
        .enumerate()
        .for_each(|(k, dst)| {
            let (outer, o) = (k / n_out, k % n_out);
            let (i0, i1, w0, w1) = t[o];
            let base = outer * n_in * inner;
            let a = &x.data()[base + i0 * inner..][..inner];
            let b = &x.data()[base + i1 * inner..][..inner];
            for ((d, &va), &vb) in dst.iter_mut().zip(a).zip(b) {
                *d = w0 * va + w1 * vb;
            }
        });
    Ok(y)
}

/// One backward pass along `axis`, from `gy` back to `n_in` samples.
fn pass_back(gy: &Tensor, axis: usize, n_in: usize) -> Result<Tensor> {
    let s = gy.shape();
    let (_, n_out, inner) = axis_view(s, axis);
    let mut gx = Tensor::zeros(with_axis(s, axis, n_in))?;
    if inner == 0 || gx.shape().is_empty() {
        return Ok(gx);
    }
    let back = transposed(n_in, &table(n_in, n_out));
    gx.data_mut()
        .par_chunks_mut(inner)
        .enumerate()
        .for_each(|(k, dst)| {
            let (outer, i) = (k / n_in, k % n_in);
            let base = outer * n_out * inner;
            for &(o, w) in &back[i] {
                for (d, &g) in dst.iter_mut().zip(&gy.data()[base + o * inner..][..inner]) {
                    *d += w * g;
                }
            }
        });
    Ok(gx)
}

fn check_size(op: &'static str, input: Shape5, out: [usize; 3]) -> Result<()> {
    if out.contains(&0) || input.d == 0 || input.h == 0 || input.w == 0 {
        return Err(EngineError::Shape {
            op,
            detail: format!("cannot resize {input} to {out:?}"),
        });
    }
    Ok(())
}

/// Trilinear resize of the spatial axes to `out = [d, h, w]` (channels and batch unchanged).
pub fn resize_trilinear(_ctx: &Ctx, x: &Tensor, out: [usize; 3]) -> Result<Tensor> {
    check_size("trilinear resize", x.shape(), out)?;
    let y = pass(x, 2, out[2])?;
    let y = pass(&y, 1, out[1])?;
    pass(&y, 0, out[0])
}

/// Backward of [`resize_trilinear`]: the gradient with respect to an input of shape `input`.
pub fn resize_trilinear_backward(_ctx: &Ctx, gy: &Tensor, input: Shape5) -> Result<Tensor> {
    let gs = gy.shape();
    check_size("trilinear resize backward", input, gs.spatial())?;
    if gs.n != input.n || gs.c != input.c {
        return Err(EngineError::Shape {
            op: "trilinear resize backward",
            detail: format!("gradient {gs} does not come from input {input}"),
        });
    }
    let g = pass_back(gy, 0, input.d)?;
    let g = pass_back(&g, 1, input.h)?;
    pass_back(&g, 2, input.w)
}

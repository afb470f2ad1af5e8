//! Element-wise layers: LeakyReLU/ReLU, residual add, channel concat; forward and backward.
//!
//! All are memory-bound single passes, parallel over fixed chunks; plain Rust vectorises them.
//! The residual add's backward is the identity (the output gradient flows unchanged to both
//! inputs), so it has no function of its own.

use rayon::prelude::*;

use crate::{Ctx, EngineError, Result, Shape5, Tensor};

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

fn same_shape(op: &'static str, a: Shape5, b: Shape5) -> Result<()> {
    if a != b {
        return Err(EngineError::Shape {
            op,
            detail: format!("shapes {a} and {b} differ"),
        });
    }
    Ok(())
}

/// LeakyReLU in place: `x = x > 0 ? x : slope * x` (`slope = 0` is ReLU).
pub fn leaky_relu_inplace(_ctx: &Ctx, x: &mut Tensor, slope: f32) {
    x.data_mut().par_chunks_mut(CHUNK).for_each(|c| {
        for v in c {
            if *v <= 0.0 {
                *v *= slope;
            }
        }
    });
}

/// LeakyReLU into a new tensor.
pub fn leaky_relu(ctx: &Ctx, x: &Tensor, slope: f32) -> Tensor {
    let mut y = x.clone();
    leaky_relu_inplace(ctx, &mut y, slope);
    y
}

/// LeakyReLU backward: `gx = gy` where the forward input `x > 0`, else `slope * gy` (PyTorch's
/// convention at exactly zero). With `slope > 0`, passing the forward output as `x` gives the
/// same result, so the input need not be kept.
pub fn leaky_relu_backward(_ctx: &Ctx, x: &Tensor, gy: &Tensor, slope: f32) -> Result<Tensor> {
    same_shape("leaky relu backward", x.shape(), gy.shape())?;
    let mut gx = gy.clone();
    gx.data_mut()
        .par_chunks_mut(CHUNK)
        .zip(x.data().par_chunks(CHUNK))
        .for_each(|(g, xc)| {
            for (gv, &xv) in g.iter_mut().zip(xc) {
                if xv <= 0.0 {
                    *gv *= slope;
                }
            }
        });
    Ok(gx)
}

/// Residual add in place: `a += b`.
pub fn add_inplace(_ctx: &Ctx, a: &mut Tensor, b: &Tensor) -> Result<()> {
    same_shape("add", a.shape(), b.shape())?;
    a.data_mut()
        .par_chunks_mut(CHUNK)
        .zip(b.data().par_chunks(CHUNK))
        .for_each(|(ac, bc)| {
            for (x, &y) in ac.iter_mut().zip(bc) {
                *x += y;
            }
        });
    Ok(())
}

/// Concatenates along channels: `[.., ca] ++ [.., cb] -> [.., ca + cb]` (the U-Net's skip
/// connection; `a`'s channels come first, as in `torch.cat([a, b], dim=1)`).
pub fn concat_channels(_ctx: &Ctx, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (sa, sb) = (a.shape(), b.shape());
    same_shape("concat", sa.with_channels(0), sb.with_channels(0))?;
    let (ca, cb) = (sa.c, sb.c);
    let mut y = Tensor::zeros(sa.with_channels(ca + cb))?;
    if ca + cb == 0 {
        return Ok(y);
    }
    let vox = 1024;
    y.data_mut()
        .par_chunks_mut(vox * (ca + cb))
        .enumerate()
        .for_each(|(k, yc)| {
            let v0 = k * vox;
            for (i, yv) in yc.chunks_exact_mut(ca + cb).enumerate() {
                let v = v0 + i;
                yv[..ca].copy_from_slice(&a.data()[v * ca..(v + 1) * ca]);
                yv[ca..].copy_from_slice(&b.data()[v * cb..(v + 1) * cb]);
            }
        });
    Ok(y)
}

/// Backward of [`concat_channels`]: splits the gradient into the first `ca` channels and the
/// rest.
pub fn split_channels(_ctx: &Ctx, g: &Tensor, ca: usize) -> Result<(Tensor, Tensor)> {
    let s = g.shape();
    if ca > s.c {
        return Err(EngineError::Shape {
            op: "split channels",
            detail: format!("cannot take {ca} of {} channels", s.c),
        });
    }
    let cb = s.c - ca;
    let mut ga = Vec::with_capacity(s.voxels() * ca);
    let mut gb = Vec::with_capacity(s.voxels() * cb);
    if s.c > 0 {
        for v in g.data().chunks_exact(s.c) {
            ga.extend_from_slice(&v[..ca]);
            gb.extend_from_slice(&v[ca..]);
        }
    }
    Ok((
        Tensor::from_vec(s.with_channels(ca), ga)?,
        Tensor::from_vec(s.with_channels(cb), gb)?,
    ))
}

/// `x` mirrored along the spatial axes marked in `axes` (`[W, H, D]`, i.e. a volume's
/// `[i, j, k]`): element `(n, d, h, w, c)` of the result is `x`'s at the mirrored position.
/// Its own inverse. Test-time mirroring runs a network on mirrored inputs and mirrors the
/// outputs back.
pub fn flip_spatial(_ctx: &Ctx, x: &Tensor, axes: [bool; 3]) -> Result<Tensor> {
    let s = x.shape();
    let mut out = Tensor::zeros(s)?;
    let row = s.w * s.c;
    let src = x.data();
    // One output row (fixed n, d, h) per task step: rows of W voxels of C channels.
    out.data_mut()
        .par_chunks_mut(row.max(1))
        .enumerate()
        .for_each(|(r, dst)| {
            let (nd, h) = (r / s.h.max(1), r % s.h.max(1));
            let (n, d) = (nd / s.d.max(1), nd % s.d.max(1));
            let d = if axes[2] { s.d - 1 - d } else { d };
            let h = if axes[1] { s.h - 1 - h } else { h };
            let from = &src[((n * s.d + d) * s.h + h) * row..][..row];
            if axes[0] {
                for (o, v) in dst.chunks_exact_mut(s.c).zip(from.chunks_exact(s.c).rev()) {
                    o.copy_from_slice(v);
                }
            } else {
                dst.copy_from_slice(from);
            }
        });
    Ok(out)
}

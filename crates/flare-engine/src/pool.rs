//! Max and average pooling with stride equal to the kernel (no padding, no overlap), forward and
//! backward, as the U-Net's downsampling alternatives to a strided convolution.
//!
//! Output size is `floor(input / kernel)` per axis (PyTorch's default); trailing voxels that do
//! not fill a window are dropped and get zero gradient. Max pooling records, per output value,
//! which voxel of its window won (the first maximum in `d, h, w` scan order, as PyTorch), so
//! backward routes the gradient there.

use rayon::prelude::*;

use crate::{Ctx, EngineError, Result, Shape5, Tensor};

/// Output shape of a pooling with window and stride `kernel`.
pub fn pool_output_shape(input: Shape5, kernel: [usize; 3]) -> Result<Shape5> {
    let [kd, kh, kw] = kernel;
    if kd == 0 || kh == 0 || kw == 0 || kd * kh * kw > 256 {
        return Err(EngineError::Param {
            op: "pool3d",
            detail: format!("kernel {kernel:?} must be at least 1 and hold at most 256 voxels"),
        });
    }
    if input.d < kd || input.h < kh || input.w < kw {
        return Err(EngineError::Shape {
            op: "pool3d",
            detail: format!("input {input} is smaller than the window {kernel:?}"),
        });
    }
    Ok(Shape5::new(
        input.n,
        input.d / kd,
        input.h / kh,
        input.w / kw,
        input.c,
    ))
}

/// The input voxel index of window tap `t` for output voxel `(n, od, oh, ow)`.
fn window_voxel(s: Shape5, k: [usize; 3], n: usize, o: [usize; 3], t: usize) -> usize {
    let (a, b, c) = (t / (k[1] * k[2]), (t / k[2]) % k[1], t % k[2]);
    ((n * s.d + o[0] * k[0] + a) * s.h + o[1] * k[1] + b) * s.w + o[2] * k[2] + c
}

/// Max pooling; also returns, per output element, the winning tap within its window.
pub fn max_pool3d_forward(_ctx: &Ctx, x: &Tensor, kernel: [usize; 3]) -> Result<(Tensor, Vec<u8>)> {
    let s = x.shape();
    let ys = pool_output_shape(s, kernel)?;
    let mut y = Tensor::zeros(ys)?;
    let mut arg = vec![0u8; ys.len()];
    let taps = kernel.iter().product::<usize>();
    let c = s.c;
    if ys.is_empty() {
        return Ok((y, arg));
    }
    y.data_mut()
        .par_chunks_mut(ys.row_len())
        .zip(arg.par_chunks_mut(ys.row_len()))
        .enumerate()
        .for_each(|(r, (row, arow))| {
            let (oh, od, n) = (r % ys.h, (r / ys.h) % ys.d, r / (ys.h * ys.d));
            for ow in 0..ys.w {
                let (yv, av) = (&mut row[ow * c..][..c], &mut arow[ow * c..][..c]);
                for t in 0..taps {
                    let v = window_voxel(s, kernel, n, [od, oh, ow], t);
                    let xv = &x.data()[v * c..][..c];
                    for i in 0..c {
                        // NaN wins, like PyTorch, so a NaN input is not silently hidden.
                        if t == 0 || xv[i] > yv[i] || xv[i].is_nan() {
                            yv[i] = xv[i];
                            av[i] = t as u8;
                        }
                    }
                }
            }
        });
    Ok((y, arg))
}

/// Max pooling backward: each output gradient goes to its window's winning voxel.
pub fn max_pool3d_backward(
    _ctx: &Ctx,
    gy: &Tensor,
    argmax: &[u8],
    kernel: [usize; 3],
    input: Shape5,
) -> Result<Tensor> {
    let ys = pool_output_shape(input, kernel)?;
    if gy.shape() != ys || argmax.len() != ys.len() {
        return Err(EngineError::Shape {
            op: "max pool backward",
            detail: format!(
                "gradient {} and {} indices for forward output {ys}",
                gy.shape(),
                argmax.len()
            ),
        });
    }
    let mut gx = Tensor::zeros(input)?;
    let c = input.c;
    let taps = kernel.iter().product::<usize>();
    if ys.is_empty() {
        return Ok(gx);
    }
    // One task per input plane (n, id) gathers the winners that fall in it: disjoint writes.
    gx.data_mut()
        .par_chunks_mut(input.h * input.row_len())
        .enumerate()
        .for_each(|(plane, gplane)| {
            let (n, id) = (plane / input.d, plane % input.d);
            if id >= ys.d * kernel[0] {
                return;
            }
            let (od, a) = (id / kernel[0], id % kernel[0]);
            for oh in 0..ys.h {
                for ow in 0..ys.w {
                    let o = ys.index(n, od, oh, ow, 0);
                    for i in 0..c {
                        let t = argmax[o + i] as usize;
                        if t >= taps || t / (kernel[1] * kernel[2]) != a {
                            continue;
                        }
                        let (b, cc) = ((t / kernel[2]) % kernel[1], t % kernel[2]);
                        let ih = oh * kernel[1] + b;
                        let iw = ow * kernel[2] + cc;
                        gplane[(ih * input.w + iw) * c + i] += gy.data()[o + i];
                    }
                }
            }
        });
    Ok(gx)
}

/// Average pooling.
pub fn avg_pool3d_forward(_ctx: &Ctx, x: &Tensor, kernel: [usize; 3]) -> Result<Tensor> {
    let s = x.shape();
    let ys = pool_output_shape(s, kernel)?;
    let mut y = Tensor::zeros(ys)?;
    let taps = kernel.iter().product::<usize>();
    let c = s.c;
    if ys.is_empty() {
        return Ok(y);
    }
    let inv = 1.0 / taps as f32;
    y.data_mut()
        .par_chunks_mut(ys.row_len())
        .enumerate()
        .for_each(|(r, row)| {
            let (oh, od, n) = (r % ys.h, (r / ys.h) % ys.d, r / (ys.h * ys.d));
            for ow in 0..ys.w {
                let yv = &mut row[ow * c..][..c];
                for t in 0..taps {
                    let v = window_voxel(s, kernel, n, [od, oh, ow], t);
                    for (a, &xv) in yv.iter_mut().zip(&x.data()[v * c..][..c]) {
                        *a += xv;
                    }
                }
                for a in yv.iter_mut() {
                    *a *= inv;
                }
            }
        });
    Ok(y)
}

/// Average pooling backward: each output gradient is shared equally by its window.
pub fn avg_pool3d_backward(
    _ctx: &Ctx,
    gy: &Tensor,
    kernel: [usize; 3],
    input: Shape5,
) -> Result<Tensor> {
    let ys = pool_output_shape(input, kernel)?;
    if gy.shape() != ys {
        return Err(EngineError::Shape {
            op: "avg pool backward",
            detail: format!("gradient {} for forward output {ys}", gy.shape()),
        });
    }
    let mut gx = Tensor::zeros(input)?;
    let c = input.c;
    if ys.is_empty() {
        return Ok(gx);
    }
    let inv = 1.0 / kernel.iter().product::<usize>() as f32;
    gx.data_mut()
        .par_chunks_mut(input.row_len())
        .enumerate()
        .for_each(|(r, row)| {
            let (ih, id, n) = (
                r % input.h,
                (r / input.h) % input.d,
                r / (input.h * input.d),
            );
            let (od, oh) = (id / kernel[0], ih / kernel[1]);
            if od >= ys.d || oh >= ys.h {
                return;
            }
            for iw in 0..ys.w * kernel[2] {
                let o = ys.index(n, od, oh, iw / kernel[2], 0);
                for (g, &v) in row[iw * c..][..c].iter_mut().zip(&gy.data()[o..o + c]) {
                    *g = v * inv;
                }
            }
        });
    Ok(gx)
}

//! Fused inference block: convolution, instance norm (affine), LeakyReLU.
//!
//! Unfused, the block reads the convolution's output three times (statistics, normalise,
//! activate). Here each output row's per-channel sums are taken while the row is still in
//! cache, and normalisation and activation are one in-place pass: one write and one
//! read-modify-write of the output instead of four passes. The variance comes from f64 sums of
//! values and squares (`E[x^2] - E[x]^2`), which at f64 precision matches the two-pass
//! formula to far below f32 resolution.

use rayon::prelude::*;

use crate::{
    Conv3dSpec, Conv3dWeight, Ctx, EngineError, Result, Tensor,
    conv3d::{Epilogue, forward_impl},
    norm::split_mean,
};

/// Instance-norm parameters of a fused block.
#[derive(Clone, Copy, Debug)]
pub struct NormAct<'a> {
    /// Per-channel scale.
    pub gamma: &'a [f32],
    /// Per-channel shift.
    pub beta: &'a [f32],
    /// Added to the variance.
    pub eps: f32,
    /// LeakyReLU negative slope (0 for ReLU).
    pub slope: f32,
}

/// `leaky_relu(instance_norm(conv3d(x)))` into a new tensor.
pub fn conv3d_norm_act_forward(
    ctx: &Ctx,
    x: &Tensor,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
    norm: &NormAct,
) -> Result<Tensor> {
    let mut y = Tensor::zeros(spec.output_shape(x.shape(), w.cout())?)?;
    conv3d_norm_act_forward_into(ctx, x, w, bias, spec, norm, &mut y)?;
    Ok(y)
}

/// [`conv3d_norm_act_forward`] into an existing tensor of the output's shape.
pub fn conv3d_norm_act_forward_into(
    ctx: &Ctx,
    x: &Tensor,
    w: &Conv3dWeight,
    bias: Option<&[f32]>,
    spec: &Conv3dSpec,
    norm: &NormAct,
    y: &mut Tensor,
) -> Result<()> {
    let c = w.cout();
    if norm.gamma.len() != c || norm.beta.len() != c {
        return Err(EngineError::Shape {
            op: "conv3d + instance norm",
            detail: format!(
                "gamma has {}, beta {} values for {c} channels",
                norm.gamma.len(),
                norm.beta.len()
            ),
        });
    }
    let ys = spec.output_shape(x.shape(), c)?;
    let voxels = ys.d * ys.h * ys.w;
    if voxels == 0 || c == 0 {
        return Err(EngineError::Shape {
            op: "conv3d + instance norm",
            detail: format!("output {ys} has no voxels or no channels"),
        });
    }
    let mut stats = vec![0.0f64; ys.rows() * 2 * c];
    forward_impl(ctx, x, w, bias, spec, y, Epilogue::RowStats(&mut stats))?;
    let rows_per_sample = ys.d * ys.h;
    let sample_len = voxels * c;
    for n in 0..ys.n {
        let mut sum = vec![0.0f64; 2 * c];
        for st in stats[n * rows_per_sample * 2 * c..(n + 1) * rows_per_sample * 2 * c]
            .chunks_exact(2 * c)
        {
            for (a, &v) in sum.iter_mut().zip(st) {
                *a += v;
            }
        }
        let mut scale = vec![0.0f32; c];
        let mut mean = vec![0.0f64; c];
        for i in 0..c {
            mean[i] = sum[i] / voxels as f64;
            let var = (sum[c + i] / voxels as f64 - mean[i] * mean[i]).max(0.0);
            scale[i] = (norm.gamma[i] as f64 / (var + norm.eps as f64).sqrt()) as f32;
        }
        let (hi, lo) = split_mean(&mean);
        let beta = norm.beta;
        let slope = norm.slope;
        y.data_mut()[n * sample_len..(n + 1) * sample_len]
            .par_chunks_mut(4096 * c)
            .for_each(|chunk| {
                for v in chunk.chunks_exact_mut(c) {
                    for i in 0..c {
                        let t = ((v[i] - hi[i]) - lo[i]) * scale[i] + beta[i];
                        v[i] = if t > 0.0 { t } else { t * slope };
                    }
                }
            });
    }
    Ok(())
}

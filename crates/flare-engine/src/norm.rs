//! Instance normalisation with an affine transform, forward and backward.
//!
//! For each sample `n` and channel `c`, over the `D*H*W` voxels:
//! `y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c]`, with the biased variance, exactly as
//! PyTorch's `InstanceNorm3d(affine=True)` in training mode. Statistics (both moments in one
//! pass, shifted by a sample value for stability) are summed in f64 over
//! voxel chunks whose boundaries depend only on the shape, then combined in chunk order, so the
//! result is deterministic for any thread count. These passes are memory-bound; plain Rust that
//! the compiler vectorises is as fast here as hand-written SIMD would be.

use rayon::prelude::*;

use crate::{Ctx, EngineError, Result, Tensor};

/// Voxels per reduction chunk.
const CHUNK: usize = 4096;

/// Per-sample, per-channel statistics of an instance-norm forward pass, needed by backward.
#[derive(Clone, Debug, PartialEq)]
pub struct NormStats {
    /// Mean, `[n][c]` (f64: a large mean rounded to f32 would swamp a small spread).
    pub mean: Vec<f64>,
    /// `1 / sqrt(var + eps)`, `[n][c]`.
    pub inv_std: Vec<f64>,
}

/// Gradients of an instance norm.
#[derive(Clone, Debug, PartialEq)]
pub struct NormGrads {
    /// Gradient with respect to the input.
    pub input: Tensor,
    /// Gradient with respect to `gamma`.
    pub gamma: Vec<f32>,
    /// Gradient with respect to `beta`.
    pub beta: Vec<f32>,
}

fn check_affine(op: &'static str, c: usize, gamma: &[f32], beta: &[f32]) -> Result<()> {
    if gamma.len() != c || beta.len() != c {
        return Err(EngineError::Shape {
            op,
            detail: format!(
                "gamma has {}, beta {} values for {c} channels",
                gamma.len(),
                beta.len()
            ),
        });
    }
    Ok(())
}

/// Splits f64 means into an f32 head and tail: `(x - hi) - lo` is then accurate in f32 even
/// when the mean is large next to the spread (`x - hi` is exact for `x` near `hi`).
pub(crate) fn split_mean(mean: &[f64]) -> (Vec<f32>, Vec<f32>) {
    let hi: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let lo = mean
        .iter()
        .zip(&hi)
        .map(|(&m, &h)| (m - h as f64) as f32)
        .collect();
    (hi, lo)
}

/// Per-channel sums over `m` voxels: `f(voxels, acc)` adds one chunk's contribution into a
/// fresh f64 accumulator of `width` values; chunks are fixed by `m` and added in order.
fn voxel_sums<F>(m: usize, width: usize, f: F) -> Vec<f64>
where
    F: Fn(std::ops::Range<usize>, &mut [f64]) + Sync,
{
    let partials: Vec<Vec<f64>> = (0..m.div_ceil(CHUNK))
        .into_par_iter()
        .map(|k| {
            let mut acc = vec![0.0f64; width];
            f(k * CHUNK..((k + 1) * CHUNK).min(m), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0f64; width];
    for p in &partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Instance norm forward; returns the output and the statistics backward needs.
pub fn instance_norm_forward(
    _ctx: &Ctx,
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<(Tensor, NormStats)> {
    let s = x.shape();
    let c = s.c;
    check_affine("instance norm", c, gamma, beta)?;
    let m = s.d * s.h * s.w;
    if m == 0 || c == 0 {
        return Err(EngineError::Shape {
            op: "instance norm",
            detail: format!("input {s} has no voxels or no channels"),
        });
    }
    let mut y = Tensor::zeros(s)?;
    let mut stats = NormStats {
        mean: vec![0.0; s.n * c],
        inv_std: vec![0.0; s.n * c],
    };
    for n in 0..s.n {
        let xs = &x.data()[n * m * c..(n + 1) * m * c];
        // One pass for both moments: f64 sums of (x - k) and (x - k)^2, shifted by the first
        // voxel's value so a large mean cannot cancel the variance away.
        let k: Vec<f64> = xs[..c].iter().map(|&v| v as f64).collect();
        let sums = voxel_sums(m, 2 * c, |vox, acc| {
            for v in xs[vox.start * c..vox.end * c].chunks_exact(c) {
                for i in 0..c {
                    let d = v[i] as f64 - k[i];
                    acc[i] += d;
                    acc[c + i] += d * d;
                }
            }
        });
        let mut mean = vec![0.0f64; c];
        let mut inv = vec![0.0f64; c];
        for i in 0..c {
            let d1 = sums[i] / m as f64;
            let var = (sums[c + i] / m as f64 - d1 * d1).max(0.0);
            mean[i] = k[i] + d1;
            inv[i] = 1.0 / (var + eps as f64).sqrt();
        }
        let scale: Vec<f32> = (0..c).map(|i| (inv[i] * gamma[i] as f64) as f32).collect();
        let (hi, lo) = split_mean(&mean);
        y.data_mut()[n * m * c..(n + 1) * m * c]
            .par_chunks_mut(CHUNK * c)
            .zip(xs.par_chunks(CHUNK * c))
            .for_each(|(yc, xc)| {
                for (yv, xv) in yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)) {
                    for i in 0..c {
                        yv[i] = ((xv[i] - hi[i]) - lo[i]) * scale[i] + beta[i];
                    }
                }
            });
        for i in 0..c {
            stats.mean[n * c + i] = mean[i];
            stats.inv_std[n * c + i] = inv[i];
        }
    }
    Ok((y, stats))
}

/// Instance norm backward from the forward input `x`, its statistics and the output gradient.
pub fn instance_norm_backward(
    _ctx: &Ctx,
    x: &Tensor,
    stats: &NormStats,
    gamma: &[f32],
    gy: &Tensor,
) -> Result<NormGrads> {
    let s = x.shape();
    let c = s.c;
    if gy.shape() != s || stats.mean.len() != s.n * c || stats.inv_std.len() != s.n * c {
        return Err(EngineError::Shape {
            op: "instance norm backward",
            detail: format!(
                "input {s}, output gradient {}, {} statistics",
                gy.shape(),
                stats.mean.len()
            ),
        });
    }
    check_affine("instance norm backward", c, gamma, gamma)?;
    let m = s.d * s.h * s.w;
    let mut gx = Tensor::zeros(s)?;
    let mut dgamma = vec![0.0f64; c];
    let mut dbeta = vec![0.0f64; c];
    for n in 0..s.n {
        let range = n * m * c..(n + 1) * m * c;
        let (xs, gs) = (&x.data()[range.clone()], &gy.data()[range.clone()]);
        let (hi, lo) = split_mean(&stats.mean[n * c..(n + 1) * c]);
        let inv: Vec<f32> = stats.inv_std[n * c..(n + 1) * c]
            .iter()
            .map(|&v| v as f32)
            .collect();
        // Per channel: sum(gy) at [i], sum(gy * xhat) at [c + i].
        let sums = voxel_sums(m, 2 * c, |vox, acc| {
            let r = vox.start * c..vox.end * c;
            for (xv, gv) in xs[r.clone()].chunks_exact(c).zip(gs[r].chunks_exact(c)) {
                for i in 0..c {
                    acc[i] += gv[i] as f64;
                    acc[c + i] += (gv[i] * ((xv[i] - hi[i]) - lo[i]) * inv[i]) as f64;
                }
            }
        });
        let mut k1 = vec![0.0f32; c];
        let mut k2 = vec![0.0f32; c];
        for i in 0..c {
            let (sg, sgx) = (sums[i], sums[c + i]);
            dbeta[i] += sg;
            dgamma[i] += sgx;
            k1[i] = (sg / m as f64) as f32;
            k2[i] = (sgx / m as f64) as f32;
        }
        gx.data_mut()[range]
            .par_chunks_mut(CHUNK * c)
            .zip(xs.par_chunks(CHUNK * c).zip(gs.par_chunks(CHUNK * c)))
            .for_each(|(dc, (xc, gc))| {
                for ((dv, xv), gv) in dc
                    .chunks_exact_mut(c)
                    .zip(xc.chunks_exact(c))
                    .zip(gc.chunks_exact(c))
                {
                    for i in 0..c {
                        let xhat = ((xv[i] - hi[i]) - lo[i]) * inv[i];
                        dv[i] = gamma[i] * inv[i] * (gv[i] - k1[i] - xhat * k2[i]);
                    }
                }
            });
    }
    Ok(NormGrads {
        input: gx,
        gamma: dgamma.iter().map(|&v| v as f32).collect(),
        beta: dbeta.iter().map(|&v| v as f32).collect(),
    })
}

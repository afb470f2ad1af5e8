//! Instance normalisation with an affine transform, forward and backward.
//!
//! For each sample `n` and channel `c`, over the `D*H*W` voxels:
//! `y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c]`, with the biased variance, exactly as
//! PyTorch's `InstanceNorm3d(affine=True)` in training mode. Statistics (both moments in one
//! pass, shifted by a sample value for stability) are summed in f32 over runs of 256 voxels,
//! joined in f64 per chunk, and the chunks (boundaries fixed by the shape) combined in order, so
//! the result is deterministic for any thread count. These passes are memory-bound once the
//! compiler vectorises them, so they are plain Rust; the backward's per-voxel loops take the
//! channel count as a compile-time constant at the U-Net's widths, without which they stayed
//! scalar (6x slower, see [`BackwardSample::run`]). Training uses the
//! fused pair [`instance_norm_act_forward`] / [`instance_norm_act_backward`] (norm and
//! LeakyReLU in one pass each way).

use rayon::prelude::*;

use crate::{Ctx, EngineError, NormAct, Result, Tensor};

/// Voxels per reduction chunk (fixed, so results do not depend on threads).
pub(crate) const CHUNK: usize = 4096;

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

/// Voxels summed in f32 before they join a chunk's f64 total.
const RUN: usize = 256;

/// Per-channel sums over one sample's `m` voxels, `width` values: `f(voxels, acc)` adds a run
/// of at most `RUN` voxels into a zeroed f32 accumulator. Runs sum in f32 (the zipped channel
/// loops vectorise), join their chunk's total in f64, and chunks of `CHUNK` voxels combine in
/// chunk order, so results do not depend on the thread count.
///
/// Measured 2026-12-07 (2-vCPU AMD EPYC, 128^3 x 16 channels): summing every voxel in f64
/// with indexed loops made the training norm forward 52 ms and backward 86 ms, against 13 ms
/// for the whole fused inference pass. Runs of 4096 voxels in f32 were too coarse for the
/// bias gradient (a sum that nearly cancels): 2e-5 relative error against PyTorch's float64
/// in the U-Net step test, whose bound is 1e-5.
pub(crate) fn chunk_sums<F>(m: usize, width: usize, f: F) -> Vec<f64>
where
    F: Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
{
    let partials: Vec<Vec<f64>> = (0..m.div_ceil(CHUNK))
        .into_par_iter()
        .map(|k| {
            let mut total = vec![0.0f64; width];
            let mut acc = vec![0.0f32; width];
            let end = ((k + 1) * CHUNK).min(m);
            for start in (k * CHUNK..end).step_by(RUN) {
                acc.fill(0.0);
                f(start..(start + RUN).min(end), &mut acc);
                for (t, &v) in total.iter_mut().zip(&acc) {
                    *t += v as f64;
                }
            }
            total
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

/// First and second moments of one sample (`xs`, channels-last with `c` channels) about a
/// per-channel pivot: `[sum(x - p) per channel, sum((x - p)^2) per channel]`. Shifting by a
/// sample of the data (the first voxel) keeps the one-pass variance free of cancellation when
/// the mean is large next to the spread.
pub(crate) fn shifted_moments(xs: &[f32], c: usize, pivot: &[f32]) -> Vec<f64> {
    let m = xs.len() / c;
    chunk_sums(m, 2 * c, |vox, acc| {
        let (sum, sq) = acc.split_at_mut(c);
        for v in xs[vox.start * c..vox.end * c].chunks_exact(c) {
            for (((s, q), &x), &p) in sum.iter_mut().zip(sq.iter_mut()).zip(v).zip(pivot) {
                let d = x - p;
                *s += d;
                *q += d * d;
            }
        }
    })
}

/// Instance norm forward; returns the output and the statistics backward needs.
pub fn instance_norm_forward(
    _ctx: &Ctx,
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<(Tensor, NormStats)> {
    // LeakyReLU of slope 1 is the identity, exactly: `v.max(0) + v.min(0) == v`.
    norm_forward(x, gamma, beta, eps, 1.0)
}

/// Instance norm then LeakyReLU (`norm.slope`) in one output pass: equal to
/// [`instance_norm_forward`] followed by [`crate::leaky_relu_inplace`], without their second
/// pass over the tensor. The training forward; [`instance_norm_act_backward`] is its backward.
pub fn instance_norm_act_forward(
    _ctx: &Ctx,
    x: &Tensor,
    norm: &NormAct,
) -> Result<(Tensor, NormStats)> {
    norm_forward(x, norm.gamma, norm.beta, norm.eps, norm.slope)
}

fn norm_forward(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    slope: f32,
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
        let pivot = &xs[..c];
        let sums = shifted_moments(xs, c, pivot);
        let mut mean = vec![0.0f64; c];
        let mut inv = vec![0.0f64; c];
        for i in 0..c {
            let d1 = sums[i] / m as f64;
            let var = (sums[c + i] / m as f64 - d1 * d1).max(0.0);
            mean[i] = pivot[i] as f64 + d1;
            inv[i] = 1.0 / (var + eps as f64).sqrt();
        }
        let scale: Vec<f32> = (0..c).map(|i| (inv[i] * gamma[i] as f64) as f32).collect();
        let (hi, lo) = split_mean(&mean);
        let ys = &mut y.data_mut()[n * m * c..(n + 1) * m * c];
        ys.par_chunks_mut(CHUNK * c)
            .zip(xs.par_chunks(CHUNK * c))
            .for_each(|(yc, xc)| {
                for (yv, xv) in yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)) {
                    // Zipped iterators: no bounds checks, so the channel loop vectorises.
                    let per_channel = hi.iter().zip(&lo).zip(&scale).zip(beta);
                    for ((y, &x), (((&h, &l), &a), &b)) in yv.iter_mut().zip(xv).zip(per_channel) {
                        let v = ((x - h) - l) * a + b;
                        // Branch-free LeakyReLU (`v > 0 ? v : slope * v`): the loop vectorises.
                        *y = v.max(0.0) + slope * v.min(0.0);
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
    norm_backward(x, None, stats, gamma, gy, 1.0)
}

/// Backward of [`instance_norm_act_forward`] from its input `x`, its output `a`, the
/// statistics and the gradient of `a`: equal to [`crate::leaky_relu_backward`] then
/// [`instance_norm_backward`], with the activation's gradient taken on the fly (a positive
/// slope keeps the sign, so `a` stands in for the pre-activation) instead of as a tensor.
pub fn instance_norm_act_backward(
    _ctx: &Ctx,
    x: &Tensor,
    a: &Tensor,
    stats: &NormStats,
    gamma: &[f32],
    ga: &Tensor,
    slope: f32,
) -> Result<NormGrads> {
    if a.shape() != x.shape() {
        return Err(EngineError::Shape {
            op: "instance norm + activation backward",
            detail: format!("input {}, output {}", x.shape(), a.shape()),
        });
    }
    norm_backward(x, Some(a), stats, gamma, ga, slope)
}

/// `ga` is the gradient of the norm's output, or with `a` given, of the activation's output
/// `a` (slope `slope`).
fn norm_backward(
    x: &Tensor,
    a: Option<&Tensor>,
    stats: &NormStats,
    gamma: &[f32],
    ga: &Tensor,
    slope: f32,
) -> Result<NormGrads> {
    let s = x.shape();
    let c = s.c;
    if ga.shape() != s || stats.mean.len() != s.n * c || stats.inv_std.len() != s.n * c {
        return Err(EngineError::Shape {
            op: "instance norm backward",
            detail: format!(
                "input {s}, output gradient {}, {} statistics",
                ga.shape(),
                stats.mean.len()
            ),
        });
    }
    check_affine("instance norm backward", c, gamma, gamma)?;
    let m = s.d * s.h * s.w;
    let mut gx = Tensor::zeros(s)?;
    let mut dgamma = vec![0.0f64; c];
    let mut dbeta = vec![0.0f64; c];
    // Without an activation, `a` is read as the gradient itself (any sign works: the mask is
    // then 1 everywhere), so one loop serves both.
    let neg = if a.is_none() { 1.0 } else { slope };
    let a = a.unwrap_or(ga);
    for n in 0..s.n {
        let range = n * m * c..(n + 1) * m * c;
        let sample = BackwardSample {
            c,
            m,
            xs: &x.data()[range.clone()],
            gs: &ga.data()[range.clone()],
            acts: &a.data()[range.clone()],
            mean: &stats.mean[n * c..(n + 1) * c],
            inv_std: &stats.inv_std[n * c..(n + 1) * c],
            gamma,
            neg,
        };
        let gxs = &mut gx.data_mut()[range];
        // The U-Net's widths get loops whose channel count is a constant (see `lanes`).
        let sums = match c {
            8 => sample.run::<8>(gxs),
            16 => sample.run::<16>(gxs),
            32 => sample.run::<32>(gxs),
            64 => sample.run::<64>(gxs),
            128 => sample.run::<128>(gxs),
            _ => sample.run_any(gxs),
        };
        for i in 0..c {
            dbeta[i] += sums[i];
            dgamma[i] += sums[c + i];
        }
    }
    Ok(NormGrads {
        input: gx,
        gamma: dgamma.iter().map(|&v| v as f32).collect(),
        beta: dbeta.iter().map(|&v| v as f32).collect(),
    })
}

/// One sample's operands of the norm (+ activation) backward.
struct BackwardSample<'a> {
    c: usize,
    m: usize,
    xs: &'a [f32],
    gs: &'a [f32],
    acts: &'a [f32],
    mean: &'a [f64],
    inv_std: &'a [f64],
    gamma: &'a [f32],
    /// The activation's slope where its output is not positive (1 without an activation).
    neg: f32,
}

/// Per-channel constants of the backward, as arrays of `C` lanes.
#[derive(Clone, Copy)]
struct Lanes<const C: usize> {
    hi: [f32; C],
    lo: [f32; C],
    inv: [f32; C],
}

/// The gradient reaching the norm's output, `g` (times the slope `neg` where the activation's
/// output `a` is not positive), and the normalised input `xhat`: the two terms every loop of
/// the backward needs, for one value. A select, so the loops stay branch-free.
#[inline(always)]
fn grad_and_xhat(x: f32, g: f32, a: f32, hi: f32, lo: f32, inv: f32, neg: f32) -> (f32, f32) {
    (g * if a > 0.0 { 1.0 } else { neg }, ((x - hi) - lo) * inv)
}

impl BackwardSample<'_> {
    /// [`BackwardSample::run`] for a channel count known only at run time (the same terms in
    /// the same order, so the same values; slower).
    fn run_any(&self, gx: &mut [f32]) -> Vec<f64> {
        let (c, m, neg) = (self.c, self.m, self.neg);
        let (xs, gs, acts) = (self.xs, self.gs, self.acts);
        let (hi, lo) = split_mean(self.mean);
        let inv: Vec<f32> = self.inv_std.iter().map(|&v| v as f32).collect();
        let sums = chunk_sums(m, 2 * c, |vox, acc| {
            let r = vox.start * c..vox.end * c;
            let (s1, s2) = acc.split_at_mut(c);
            let rows = xs[r.clone()]
                .chunks_exact(c)
                .zip(gs[r.clone()].chunks_exact(c))
                .zip(acts[r].chunks_exact(c));
            for ((xv, gv), av) in rows {
                for i in 0..c {
                    let (gy, xhat) = grad_and_xhat(xv[i], gv[i], av[i], hi[i], lo[i], inv[i], neg);
                    s1[i] += gy;
                    s2[i] += gy * xhat;
                }
            }
        });
        let k1: Vec<f32> = sums[..c].iter().map(|&v| (v / m as f64) as f32).collect();
        let k2: Vec<f32> = sums[c..].iter().map(|&v| (v / m as f64) as f32).collect();
        let gi: Vec<f32> = self
            .gamma
            .iter()
            .zip(&inv)
            .map(|(&g, &iv)| g * iv)
            .collect();
        gx.par_chunks_mut(CHUNK * c)
            .zip(xs.par_chunks(CHUNK * c))
            .zip(gs.par_chunks(CHUNK * c).zip(acts.par_chunks(CHUNK * c)))
            .for_each(|((dc, xc), (gc, ac))| {
                let rows = dc
                    .chunks_exact_mut(c)
                    .zip(xc.chunks_exact(c))
                    .zip(gc.chunks_exact(c).zip(ac.chunks_exact(c)));
                for ((dv, xv), (gv, av)) in rows {
                    for i in 0..c {
                        let (gy, xhat) =
                            grad_and_xhat(xv[i], gv[i], av[i], hi[i], lo[i], inv[i], neg);
                        dv[i] = gi[i] * (gy - k1[i] - xhat * k2[i]);
                    }
                }
            });
        sums
    }

    /// Writes the input gradient into `gx` and returns the per-channel sums `[sum(gy) per
    /// channel, sum(gy * xhat) per channel]` (the gradients of beta and gamma). `C` is the
    /// channel count: with it a constant, the per-voxel loops run over fixed-size arrays that
    /// the compiler turns into whole vectors (with the count known only at run time the zipped
    /// loops stayed scalar: 223 ms at 128^3 x 16, 3.6 GB/s; `norm_bench`, 2026-12-07, 2-vCPU
    /// AMD EPYC).
    fn run<const C: usize>(&self, gx: &mut [f32]) -> Vec<f64> {
        let (c, m, neg) = (self.c, self.m, self.neg);
        assert_eq!(C, c, "norm backward: lanes for {C} channels used for {c}");
        let (xs, gs, acts) = (self.xs, self.gs, self.acts);
        let (hi, lo) = split_mean(self.mean);
        let inv: Vec<f32> = self.inv_std.iter().map(|&v| v as f32).collect();
        let mut k = Lanes::<C> {
            hi: [0.0; C],
            lo: [0.0; C],
            inv: [0.0; C],
        };
        k.hi.copy_from_slice(&hi);
        k.lo.copy_from_slice(&lo);
        k.inv.copy_from_slice(&inv);
        // Per channel: sum(gy) at [i], sum(gy * xhat) at [c + i].
        let sums = chunk_sums(m, 2 * C, |vox, acc| {
            let r = vox.start * C..vox.end * C;
            let (mut s1, mut s2) = ([0.0f32; C], [0.0f32; C]);
            let rows = xs[r.clone()]
                .as_chunks::<C>()
                .0
                .iter()
                .zip(gs[r.clone()].as_chunks::<C>().0)
                .zip(acts[r].as_chunks::<C>().0);
            for ((xv, gv), av) in rows {
                for i in 0..C {
                    let (gy, xhat) =
                        grad_and_xhat(xv[i], gv[i], av[i], k.hi[i], k.lo[i], k.inv[i], neg);
                    s1[i] += gy;
                    s2[i] += gy * xhat;
                }
            }
            acc[..C].copy_from_slice(&s1);
            acc[C..].copy_from_slice(&s2);
        });
        let mut k1 = [0.0f32; C];
        let mut k2 = [0.0f32; C];
        let mut gi = [0.0f32; C];
        for i in 0..C {
            k1[i] = (sums[i] / m as f64) as f32;
            k2[i] = (sums[C + i] / m as f64) as f32;
            gi[i] = self.gamma[i] * k.inv[i];
        }
        gx.par_chunks_mut(CHUNK * C)
            .zip(xs.par_chunks(CHUNK * C))
            .zip(gs.par_chunks(CHUNK * C).zip(acts.par_chunks(CHUNK * C)))
            .for_each(|((dc, xc), (gc, ac))| {
                let rows = dc
                    .as_chunks_mut::<C>()
                    .0
                    .iter_mut()
                    .zip(xc.as_chunks::<C>().0)
                    .zip(gc.as_chunks::<C>().0.iter().zip(ac.as_chunks::<C>().0));
                for ((dv, xv), (gv, av)) in rows {
                    for i in 0..C {
                        let (gy, xhat) =
                            grad_and_xhat(xv[i], gv[i], av[i], k.hi[i], k.lo[i], k.inv[i], neg);
                        dv[i] = gi[i] * (gy - k1[i] - xhat * k2[i]);
                    }
                }
            });
        sums
    }
}

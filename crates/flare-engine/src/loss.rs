//! Softmax over channels and the segmentation losses: weighted cross-entropy and soft Dice,
//! each returning the loss and its gradient with respect to the logits.
//!
//! Labels are one `u8` class index per voxel, in the logits' voxel order (`[N, D, H, W]`).
//! Sums run in f64 over fixed voxel chunks added in order (deterministic for any thread
//! count). Definitions follow PyTorch: cross-entropy is `CrossEntropyLoss(weight=w)` with mean
//! reduction (`sum_i w[y_i] * -log p_i[y_i] / sum_i w[y_i]`); soft Dice is computed over the
//! whole batch (nnU-Net's "batch Dice"), per class
//! `dice_c = (2 sum p_c g_c + smooth) / (sum p_c + sum g_c + smooth)`, and the loss is
//! `1 - sum_c w_c dice_c / sum_c w_c` (a zero weight leaves a class out, e.g. background).

use rayon::prelude::*;

use crate::{Ctx, EngineError, Result, Tensor};

/// Voxels per reduction chunk.
const CHUNK: usize = 4096;

/// A loss value and its gradient with respect to the logits.
#[derive(Clone, Debug, PartialEq)]
pub struct LossGrad {
    /// The loss.
    pub loss: f64,
    /// d loss / d logits, same shape as the logits.
    pub grad: Tensor,
}

/// Softmax over the channel axis, numerically stable (the channel maximum is subtracted).
pub fn softmax(ctx: &Ctx, logits: &Tensor) -> Tensor {
    let mut p = logits.clone();
    softmax_inplace(ctx, &mut p);
    p
}

/// [`softmax`] in place, for callers that no longer need the logits (inference's export).
pub fn softmax_inplace(_ctx: &Ctx, logits: &mut Tensor) {
    let c = logits.shape().c;
    if c == 0 {
        return;
    }
    logits
        .data_mut()
        .par_chunks_mut(CHUNK * c)
        .for_each(|chunk| {
            for v in chunk.chunks_exact_mut(c) {
                let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let mut s = 0.0f32;
                for x in v.iter_mut() {
                    *x = (*x - m).exp();
                    s += *x;
                }
                let inv = 1.0 / s;
                for x in v.iter_mut() {
                    *x *= inv;
                }
            }
        });
}

fn check(op: &'static str, logits: &Tensor, labels: &[u8], weights: Option<&[f32]>) -> Result<()> {
    let s = logits.shape();
    if labels.len() != s.voxels() || s.c == 0 || s.voxels() == 0 {
        return Err(EngineError::Shape {
            op,
            detail: format!("{} labels for logits {s}", labels.len()),
        });
    }
    if let Some(w) = weights
        && w.len() != s.c
    {
        return Err(EngineError::Shape {
            op,
            detail: format!("{} class weights for {} classes", w.len(), s.c),
        });
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= s.c) {
        return Err(EngineError::Param {
            op,
            detail: format!("label {bad} is not below the {} classes", s.c),
        });
    }
    Ok(())
}

/// Per-chunk f64 sums of `width` values over the voxels, added in chunk order.
fn voxel_sums<F>(voxels: usize, width: usize, f: F) -> Vec<f64>
where
    F: Fn(std::ops::Range<usize>, &mut [f64]) + Sync,
{
    let parts: Vec<Vec<f64>> = (0..voxels.div_ceil(CHUNK))
        .into_par_iter()
        .map(|k| {
            let mut acc = vec![0.0; width];
            f(k * CHUNK..((k + 1) * CHUNK).min(voxels), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0; width];
    for p in &parts {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Weighted cross-entropy (mean over voxels, weighted as PyTorch) and its logit gradient.
pub fn cross_entropy(
    ctx: &Ctx,
    logits: &Tensor,
    labels: &[u8],
    class_weights: Option<&[f32]>,
) -> Result<LossGrad> {
    check("cross entropy", logits, labels, class_weights)?;
    let c = logits.shape().c;
    let wt = |l: u8| class_weights.map_or(1.0, |w| w[l as usize]);
    let p = softmax(ctx, logits);
    let sums = voxel_sums(labels.len(), 2, |vox, acc| {
        for v in vox {
            let l = labels[v];
            let w = wt(l) as f64;
            let pv = p.data()[v * c + l as usize] as f64;
            acc[0] += -w * pv.max(f64::MIN_POSITIVE).ln();
            acc[1] += w;
        }
    });
    if sums[1] <= 0.0 {
        return Err(EngineError::Param {
            op: "cross entropy",
            detail: "the labelled classes all have weight zero".into(),
        });
    }
    let mut grad = p;
    let scale = 1.0 / sums[1];
    grad.data_mut()
        .par_chunks_mut(CHUNK * c)
        .zip(labels.par_chunks(CHUNK))
        .for_each(|(g, ls)| {
            for (gv, &l) in g.chunks_exact_mut(c).zip(ls) {
                let w = (wt(l) as f64 * scale) as f32;
                gv[l as usize] -= 1.0;
                for x in gv.iter_mut() {
                    *x *= w;
                }
            }
        });
    Ok(LossGrad {
        loss: sums[0] * scale,
        grad,
    })
}

/// Soft Dice loss over the batch with class weights (see the module doc) and its logit
/// gradient.
pub fn soft_dice(
    ctx: &Ctx,
    logits: &Tensor,
    labels: &[u8],
    class_weights: Option<&[f32]>,
    smooth: f64,
) -> Result<LossGrad> {
    check("soft dice", logits, labels, class_weights)?;
    let c = logits.shape().c;
    let weights: Vec<f64> = (0..c)
        .map(|i| class_weights.map_or(1.0, |w| w[i] as f64))
        .collect();
    let wsum: f64 = weights.iter().sum();
    if wsum <= 0.0 {
        return Err(EngineError::Param {
            op: "soft dice",
            detail: "class weights sum to zero".into(),
        });
    }
    let p = softmax(ctx, logits);
    // Per class: intersection at [i], sum p at [c + i], sum g at [2c + i].
    let sums = voxel_sums(labels.len(), 3 * c, |vox, acc| {
        for v in vox {
            let pv = &p.data()[v * c..][..c];
            let l = labels[v] as usize;
            acc[l] += pv[l] as f64;
            acc[2 * c + l] += 1.0;
            for i in 0..c {
                acc[c + i] += pv[i] as f64;
            }
        }
    });
    let mut loss = 1.0;
    // d loss / d p_ic = a_c + b_c * g_ic.
    let mut a = vec![0.0f32; c];
    let mut b = vec![0.0f32; c];
    for i in 0..c {
        let (inter, sp, sg) = (sums[i], sums[c + i], sums[2 * c + i]);
        let den = sp + sg + smooth;
        let num = 2.0 * inter + smooth;
        let k = weights[i] / wsum;
        loss -= k * num / den;
        a[i] = (k * num / (den * den)) as f32;
        b[i] = (-k * 2.0 / den) as f32;
    }
    let mut grad = p;
    grad.data_mut()
        .par_chunks_mut(CHUNK * c)
        .zip(labels.par_chunks(CHUNK))
        .for_each_init(
            || vec![0.0f32; c],
            |dp, (g, ls)| {
                for (pv, &l) in g.chunks_exact_mut(c).zip(ls) {
                    // Through the softmax: dz_j = p_j * (dp_j - sum_i p_i dp_i).
                    let mut dot = 0.0f32;
                    for i in 0..c {
                        dp[i] = a[i] + if i == l as usize { b[i] } else { 0.0 };
                        dot += pv[i] * dp[i];
                    }
                    for i in 0..c {
                        pv[i] *= dp[i] - dot;
                    }
                }
            },
        );
    Ok(LossGrad { loss, grad })
}

//! Lean inference: the U-Net forward with every activation freed as soon as its consumers ran,
//! and the peak of live activation bytes reported.
//!
//! Three things keep the peak low:
//! - Skip tensors are owned by a list and taken out when their decoder level consumes them;
//!   every other intermediate is dropped right after the layer that reads it.
//! - Each unit is convolution, then instance norm and LeakyReLU in place on its output (two
//!   passes: statistics, then scale/shift/activate), so the normalised tensor is never a
//!   second buffer. (The engine's fused op does the same in one call but measured slower; see
//!   `unit_infer`.)
//! - The decoder's `concat([up, skip])` is never built. A convolution over a concat is the sum
//!   of convolutions over each part with that part's input channels of the weights, so the
//!   first decoder unit convolves the skip into its output, frees the skip, upsamples, and adds
//!   the upsampled part's convolution ([`conv3d_forward_accumulate`]); norm and activation
//!   then run in place on that sum.
//!
//! The in-place norm + activation is private here: the engine has no standalone in-place
//! instance norm (see the crate README).

use flare_engine::{
    Ctx, Shape5, Tensor, conv_transpose3d_forward, conv3d_forward, conv3d_forward_accumulate,
    conv3d_forward_into,
};
use rayon::prelude::*;

use crate::{ModelError, Result, UNet, Unit, error::LayerContext};

/// Voxels per chunk of the norm statistics (fixed, so results do not depend on threads).
const CHUNK: usize = 4096;

/// Memory accounting of one inference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferenceStats {
    /// The largest total size in bytes of activation tensors alive at once (the input
    /// included, weights and packing scratch excluded).
    pub peak_activation_bytes: usize,
    /// Wall time of each step, in order: (`<layer>.conv`, `<layer>.norm_act`, `<layer>.up`,
    /// `<layer>.conv_up` for the decoder's accumulated part, `head`), in seconds.
    pub step_secs: Vec<(String, f64)>,
}

/// Spare buffers kept per exact length: enough for the two same-size tensors a level holds.
const SPARES_PER_LEN: usize = 2;

/// Running total of live activation bytes, the step timer, and spare buffers.
///
/// Freed activations go to `spare` and the next tensor of the same length reuses one: a fresh
/// allocation of a large tensor is an mmap whose every page faults and is zeroed by the kernel
/// on first write, which costs about a tenth of a forward pass at 128^3. The engine's `_into`
/// ops overwrite every element, so a reused buffer needs no clearing. Spare bytes are not live
/// activations, but they are resident: the peak RSS is measured by `examples/infer_memory.rs`.
#[derive(Default)]
struct Live {
    cur: usize,
    peak: usize,
    steps: Vec<(String, f64)>,
    mark: Option<std::time::Instant>,
    spare: Vec<Vec<f32>>,
}

impl Live {
    /// A tensor of `shape` whose contents the caller overwrites entirely.
    fn take(&mut self, shape: Shape5, name: &str) -> Result<Tensor> {
        let len = shape.checked_len().unwrap_or(usize::MAX);
        let t = match self.spare.iter().position(|v| v.len() == len) {
            Some(i) => Tensor::from_vec(shape, self.spare.swap_remove(i)).layer(name)?,
            None => Tensor::zeros(shape).layer(name)?,
        };
        self.alloc(&t);
        Ok(t)
    }

    /// Starts timing a step.
    fn start(&mut self) {
        self.mark = Some(std::time::Instant::now());
    }
    /// Ends the step started last, under `name`.
    fn done(&mut self, name: String) {
        if let Some(t) = self.mark.take() {
            self.steps.push((name, t.elapsed().as_secs_f64()));
        }
    }
    fn alloc(&mut self, t: &Tensor) {
        self.cur += t.data().len() * 4;
        self.peak = self.peak.max(self.cur);
    }
    /// Releases every spare buffer, before a fresh allocation the spares cannot serve (the
    /// engine's transposed convolution allocates its output), so that it never sits on top of
    /// idle spares.
    fn release_spares(&mut self) {
        self.spare.clear();
    }

    fn free(&mut self, t: Tensor) {
        let v = t.into_vec();
        self.cur = self.cur.saturating_sub(v.len() * 4);
        if self.spare.iter().filter(|s| s.len() == v.len()).count() < SPARES_PER_LEN {
            self.spare.push(v);
        }
    }
}

/// Instance norm (affine) then LeakyReLU, in place, in two passes over the tensor.
///
/// Pass 1 sums `x - p` and `(x - p)^2` per channel, where the pivot `p` is the channel's first
/// value: shifting by a sample of the data keeps the one-pass variance free of cancellation.
/// Each fixed chunk of voxels sums in f32 (short enough for f32, and vectorisable), the chunks
/// combine in f64 in order, so the result does not depend on the thread count. Pass 2 scales,
/// shifts and activates.
fn norm_act_inplace(t: &mut Tensor, gamma: &[f32], beta: &[f32], eps: f32, slope: f32) {
    let s = t.shape();
    let c = s.c;
    let m = s.d * s.h * s.w;
    if c == 0 || m == 0 {
        return;
    }
    for n in 0..s.n {
        let data = &mut t.data_mut()[n * m * c..(n + 1) * m * c];
        let pivot: Vec<f32> = data[..c].to_vec();
        let parts: Vec<Vec<f32>> = data
            .par_chunks(CHUNK * c)
            .map(|ch| {
                let mut acc = vec![0.0f32; 2 * c];
                let (sum, sq) = acc.split_at_mut(c);
                // Zipped iterators: no bounds checks, so the channel loop vectorises.
                for v in ch.chunks_exact(c) {
                    for (((s, q), &x), &p) in sum.iter_mut().zip(sq.iter_mut()).zip(v).zip(&pivot) {
                        let d = x - p;
                        *s += d;
                        *q += d * d;
                    }
                }
                acc
            })
            .collect();
        let mut tot = vec![0.0f64; 2 * c];
        for p in parts {
            for (a, b) in tot.iter_mut().zip(p) {
                *a += b as f64;
            }
        }
        let mut scale = vec![0.0f32; c];
        let mut shift = vec![0.0f32; c];
        for i in 0..c {
            let md = tot[i] / m as f64;
            let var = (tot[c + i] / m as f64 - md * md).max(0.0);
            let mean = pivot[i] as f64 + md;
            let inv = 1.0 / (var + eps as f64).sqrt();
            scale[i] = (inv * gamma[i] as f64) as f32;
            shift[i] = (beta[i] as f64 - mean * inv * gamma[i] as f64) as f32;
        }
        data.par_chunks_mut(CHUNK * c).for_each(|ch| {
            for v in ch.chunks_exact_mut(c) {
                // Branch-free LeakyReLU (equal to `y > 0 ? y : slope * y`) so the loop vectorises.
                for ((x, &a), &b) in v.iter_mut().zip(&scale).zip(&shift) {
                    let y = *x * a + b;
                    *x = y.max(0.0) + slope * y.min(0.0);
                }
            }
        });
    }
}

impl UNet {
    /// A fused unit on an input the caller keeps.
    fn unit_infer(
        &self,
        ctx: &Ctx,
        u: &Unit,
        x: &Tensor,
        live: &mut Live,
        name: &str,
    ) -> Result<Tensor> {
        let cfg = self.config();
        let shape = u
            .conv
            .spec
            .output_shape(x.shape(), u.conv.weight.cout())
            .layer(name)?;
        let mut y = live.take(shape, name)?;
        live.start();
        // Not the engine's fused `conv3d_norm_act_forward_into`: measured at 128^3 on this
        // machine, it took 237-279 ms on encoder.0.conv1 against 92-95 ms for this convolution
        // plus the in-place two-pass norm (whole forward 2.1-2.5 s against 1.5-1.6 s).
        conv3d_forward_into(
            ctx,
            x,
            &u.conv.weight,
            Some(&u.conv.bias),
            &u.conv.spec,
            &mut y,
        )
        .layer(name)?;
        norm_act_inplace(
            &mut y,
            &u.norm.gamma,
            &u.norm.beta,
            cfg.norm_eps(),
            cfg.slope(),
        );
        live.done(format!("{name}.conv_norm_act"));
        Ok(y)
    }

    /// Inference forward of `x` (`[N, D, H, W, in_channels]`, consumed so that it can be freed
    /// early): the main head's logits `[N, D, H, W, classes]` and the peak of live activations.
    pub fn infer(&self, ctx: &Ctx, x: Tensor) -> Result<(Tensor, InferenceStats)> {
        let cfg = self.config();
        let s = x.shape();
        cfg.check_input(s.spatial(), s.c)?;
        let levels = cfg.levels();
        let mut live = Live::default();
        live.alloc(&x);
        let mut skips: Vec<Option<Tensor>> = Vec::with_capacity(levels);
        let mut cur = x;
        for (l, units) in self.encoder.iter().enumerate() {
            for (i, u) in units.iter().enumerate() {
                let name = format!("encoder.{l}.conv{}", i + 1);
                let y = self.unit_infer(ctx, u, &cur, &mut live, &name)?;
                let input = std::mem::replace(&mut cur, y);
                // A level's output is the next level's input and also its skip: keep it.
                if i == 0 && l > 0 {
                    skips.push(Some(input));
                } else {
                    live.free(input);
                }
            }
        }
        // `cur` is the deepest level's output; levels 0..L-1 wait in `skips`.
        for l in (0..levels.saturating_sub(1)).rev() {
            let d = &self.decoder[l];
            let skip = skips
                .get_mut(l)
                .and_then(Option::take)
                .ok_or_else(|| ModelError::Config(format!("no skip tensor for level {l}")))?;
            let width = cfg.widths[l];
            let first = d
                .units
                .first()
                .ok_or_else(|| ModelError::Config("a block has no units".into()))?;
            let name = format!("decoder.{l}.conv1");
            let (w_up, w_skip) = first.conv.weight.split_input_channels(width).layer(&name)?;
            let mut y = live.take(skip.shape().with_channels(w_skip.cout()), &name)?;
            live.start();
            conv3d_forward_into(
                ctx,
                &skip,
                &w_skip,
                Some(&first.conv.bias),
                &first.conv.spec,
                &mut y,
            )
            .layer(&name)?;
            live.done(format!("{name}.conv_skip"));
            live.free(skip);
            live.release_spares();
            live.start();
            let up = conv_transpose3d_forward(ctx, &cur, &d.up.weight, Some(&d.up.bias))
                .layer(&format!("decoder.{l}.up"))?;
            live.done(format!("decoder.{l}.up"));
            live.alloc(&up);
            live.free(std::mem::replace(&mut cur, up));
            live.start();
            conv3d_forward_accumulate(ctx, &cur, &w_up, None, &first.conv.spec, &mut y)
                .layer(&name)?;
            live.done(format!("{name}.conv_up"));
            live.start();
            norm_act_inplace(
                &mut y,
                &first.norm.gamma,
                &first.norm.beta,
                cfg.norm_eps(),
                cfg.slope(),
            );
            live.done(format!("{name}.norm_act"));
            live.free(std::mem::replace(&mut cur, y));
            for (i, u) in d.units.iter().enumerate().skip(1) {
                let name = format!("decoder.{l}.conv{}", i + 1);
                let y = self.unit_infer(ctx, u, &cur, &mut live, &name)?;
                live.free(std::mem::replace(&mut cur, y));
            }
        }
        let h = &self.head;
        live.release_spares();
        live.start();
        let logits = conv3d_forward(ctx, &cur, &h.weight, Some(&h.bias), &h.spec).layer("head")?;
        live.done("head".into());
        live.alloc(&logits);
        live.free(cur);
        Ok((
            logits,
            InferenceStats {
                peak_activation_bytes: live.peak,
                step_secs: live.steps,
            },
        ))
    }
}

/// The class with the highest logit per voxel (first on ties), in voxel order.
pub fn argmax_labels(logits: &Tensor) -> Vec<u8> {
    let c = logits.shape().c.max(1);
    logits
        .data()
        .par_chunks(c)
        .map(|v| {
            let mut best = 0;
            for (i, &x) in v.iter().enumerate() {
                if x > v[best] {
                    best = i;
                }
            }
            best.min(u8::MAX as usize) as u8
        })
        .collect()
}

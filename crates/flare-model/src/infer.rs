//! Lean inference: the U-Net forward with every activation freed as soon as its consumers ran,
//! and the peak of live activation bytes reported.
//!
//! Three things keep the peak low:
//! - Skip tensors are owned by a list and taken out when their decoder level consumes them;
//!   every other intermediate is dropped right after the layer that reads it.
//! - Each unit is convolution, then instance norm and LeakyReLU in place on its output
//!   ([`instance_norm_act_inplace`]), so the normalised tensor is never a second buffer.
//! - The decoder's `concat([up, skip])` is never built. A convolution over a concat is the sum
//!   of convolutions over each part with that part's input channels of the weights, so the
//!   first decoder unit convolves the skip into its output, frees the skip, upsamples, and adds
//!   the upsampled part's convolution ([`conv3d_forward_accumulate`]); norm and activation
//!   then run in place on that sum.
//!
//! - In a bf16 context each norm and activation writes bf16 channel pairs
//!   ([`instance_norm_act_to_bf16`]): the convolutions read them as they are (no conversion
//!   pass of their own). Pair buffers are fp32-sized, so one pool serves both (see
//!   `Live::take_bf16`).
//!   The labels are the same bits as converting in each convolution.
//!
//! Freed buffers are reused for later tensors of the same length, and across calls through an
//! [`InferWorkspace`], because on our VMs faulting in fresh pages costs about 0.6 ms per MiB.

use flare_engine::{
    Bf16Tensor, ConvInput, Ctx, NormAct, Shape5, Tensor, conv_transpose3d_forward_into,
    conv_transpose3d_output_shape, conv3d_forward_accumulate, conv3d_forward_into,
    instance_norm_act_inplace, instance_norm_act_to_bf16,
};
use std::collections::HashMap;

use rayon::prelude::*;

use crate::{ModelError, Result, UNet, Unit, error::LayerContext};

/// Memory accounting of one inference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InferenceStats {
    /// The largest total size in bytes of activation tensors alive at once (the input
    /// included, weights and packing scratch excluded).
    pub peak_activation_bytes: usize,
    /// Wall time of each step, in order: (`<layer>.conv`, `<layer>.norm_act`, `<layer>.up`,
    /// `<layer>.conv_up` for the decoder's accumulated part, `head`), in seconds.
    pub step_secs: Vec<(String, f64)>,
    /// Bytes of activation buffers allocated fresh (not served by a spare or the workspace):
    /// each costs page faults on first write.
    pub fresh_bytes: usize,
}

/// Activation buffers kept between inferences, so that repeated calls (sliding windows, a
/// service, a benchmark) reuse memory instead of faulting in fresh pages.
///
/// A fresh allocation of a large tensor is an mmap whose every page faults and is zeroed by
/// the kernel on first write: about 0.6 ms per MiB on our VMs, ~80 ms per 128 MiB activation,
/// which at 128^3 was a fifth of the forward. The engine's `_into` ops overwrite every element,
/// so a reused buffer needs no clearing. The workspace never holds more bytes than the peak of
/// live activations of the largest inference it served (see [`UNet::infer_with`]).
#[derive(Debug, Default)]
pub struct InferWorkspace {
    spare: Vec<Vec<f32>>,
    /// The resident budget: after one inference, the bytes of the largest number of
    /// same-length buffers it had alive at once, summed over lengths, so that from the
    /// second call on every buffer comes from the workspace (at 128^3 about 1.3x the live
    /// peak); before any, 0, and a first call stays within its own live peak.
    budget: usize,
    /// Per buffer length, the most buffers of it earlier inferences had alive at once: which
    /// spares a later call will ask for, and which are surplus (the caller's input buffers,
    /// say) and give way first when the budget is full.
    want: HashMap<usize, usize>,
}

impl InferWorkspace {
    /// An empty workspace.
    pub fn new() -> InferWorkspace {
        InferWorkspace::default()
    }

    /// Hands a tensor the caller is done with (e.g. the logits of the previous call) back,
    /// so the next inference can reuse its buffer.
    pub fn recycle(&mut self, t: Tensor) {
        let v = t.into_vec();
        if self.held_bytes() + v.len() * 4 <= self.budget {
            self.spare.push(v);
        }
    }

    /// Bytes of the buffers held.
    pub fn held_bytes(&self) -> usize {
        self.spare.iter().map(|v| v.len() * 4).sum()
    }
}

/// Running total of live activation bytes, the step timer, and spare buffers.
///
/// Freed activations go to `spare` and the next tensor of the same length reuses one. Spares
/// are resident memory, so the total of live and spare bytes is held under the live peak:
/// before a fresh allocation, spares that do not fit are dropped (oldest first).
#[derive(Default)]
struct Live {
    cur: usize,
    peak: usize,
    /// The live peak of earlier inferences that used the same workspace.
    budget: usize,
    steps: Vec<(String, f64)>,
    mark: Option<std::time::Instant>,
    spare: Vec<Vec<f32>>,
    spare_bytes: usize,
    fresh: usize,
    /// Per buffer length: (alive now, most alive at once).
    counts: HashMap<usize, (usize, usize)>,
    /// [`InferWorkspace::want`] of earlier calls.
    want: HashMap<usize, usize>,
}

impl Live {
    fn from_workspace(ws: &mut InferWorkspace) -> Live {
        let spare = std::mem::take(&mut ws.spare);
        Live {
            budget: ws.budget,
            want: ws.want.clone(),
            spare_bytes: spare.iter().map(|v| v.len() * 4).sum(),
            spare,
            ..Live::default()
        }
    }

    fn into_workspace(self, ws: &mut InferWorkspace) {
        let demand: usize = self.counts.iter().map(|(len, c)| len * 4 * c.1).sum();
        ws.budget = ws.budget.max(self.peak).max(demand);
        for (&len, &(_, most)) in &self.counts {
            let w = ws.want.entry(len).or_default();
            *w = (*w).max(most);
        }
        ws.spare = self.spare;
    }

    /// A tensor of `shape` whose contents the caller overwrites entirely.
    fn take(&mut self, shape: Shape5, name: &str) -> Result<Tensor> {
        let len = shape.checked_len().unwrap_or(usize::MAX);
        let t = match self.spare_or_room(len) {
            Some(v) => Tensor::from_vec(shape, v).layer(name)?,
            None => Tensor::zeros(shape).layer(name)?,
        };
        self.alloc_len(len);
        Ok(t)
    }

    /// A bf16 tensor of `shape` whose words the caller overwrites entirely, in a buffer of the
    /// fp32 tensor's length: the same pool then serves both precisions buffer for buffer, so
    /// the workspace holds what it holds for fp32 (pair buffers of their own lengths measured
    /// 2.4x the live peak held against 1.7x, 2026-12-07). The unused half of a fresh buffer is
    /// never touched, so never resident.
    fn take_bf16(&mut self, shape: Shape5, name: &str) -> Result<Bf16Tensor> {
        // Checked before a fresh `vec!`, which would abort where `Tensor::zeros` errs.
        let len = shape.checked_len().ok_or_else(|| {
            ModelError::Config(format!("{name}: shape {shape} overflows the address space"))
        })?;
        let buf = match self.spare_or_room(len) {
            Some(v) => bytemuck::allocation::cast_vec(v),
            None => vec![0u32; len],
        };
        let t = Bf16Tensor::from_words(shape, buf).layer(name)?;
        self.alloc_len(len);
        Ok(t)
    }

    /// A spare buffer of `len` values, or `None` after making room for a fresh one (spares
    /// that would push live plus spare bytes past the budget are dropped, oldest first).
    fn spare_or_room(&mut self, len: usize) -> Option<Vec<f32>> {
        if let Some(i) = self.spare.iter().position(|v| v.len() == len) {
            self.spare_bytes -= len * 4;
            return Some(self.spare.swap_remove(i));
        }
        let need = len.saturating_mul(4);
        let budget = self.budget.max(self.peak).max(self.cur + need);
        while !self.spare.is_empty() && self.cur + need + self.spare_bytes > budget {
            let v = self.spare.remove(0);
            self.spare_bytes -= v.len() * 4;
        }
        self.fresh += need;
        None
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
    fn alloc_len(&mut self, len: usize) {
        self.cur += len * 4;
        self.peak = self.peak.max(self.cur);
        let c = self.counts.entry(len).or_default();
        c.0 += 1;
        c.1 = c.1.max(c.0);
    }

    /// Ends a tensor's life; its buffer becomes a spare (resident bytes do not change) unless
    /// that would hold more than the budget (a buffer the workspace did not provide, such as
    /// the input, would otherwise add to the spares on every call).
    fn free(&mut self, t: Tensor) {
        self.free_vec(t.into_vec());
    }

    /// Ends an activation's life (see [`Live::free`]).
    fn free_act(&mut self, a: Act) {
        match a {
            Act::F32(t) => self.free(t),
            Act::Bf16(t) => self.free_vec(bytemuck::allocation::cast_vec(t.into_words())),
        }
    }

    fn free_vec(&mut self, v: Vec<f32>) {
        let len = v.len();
        let bytes = len * 4;
        self.cur = self.cur.saturating_sub(bytes);
        if let Some(c) = self.counts.get_mut(&len) {
            c.0 = c.0.saturating_sub(1);
        }
        let limit = self.budget.max(self.peak);
        if self.cur + self.spare_bytes + bytes > limit && self.held(len) < self.wanted(len) {
            // A buffer a later step will ask for: make room by dropping surplus spares.
            let mut i = 0;
            while i < self.spare.len() && self.cur + self.spare_bytes + bytes > limit {
                let l = self.spare[i].len();
                if self.held(l) > self.wanted(l) {
                    self.spare_bytes -= l * 4;
                    self.spare.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
        if self.cur + self.spare_bytes + bytes <= limit {
            self.spare_bytes += bytes;
            self.spare.push(v);
        }
    }

    /// Buffers of length `len` alive or spare.
    fn held(&self, len: usize) -> usize {
        let alive = self.counts.get(&len).map_or(0, |c| c.0);
        alive + self.spare.iter().filter(|v| v.len() == len).count()
    }

    /// The most buffers of length `len` alive at once, in earlier calls or this one.
    fn wanted(&self, len: usize) -> usize {
        let now = self.counts.get(&len).map_or(0, |c| c.1);
        self.want.get(&len).copied().unwrap_or(0).max(now)
    }
}

/// An activation between layers: fp32, or bf16 channel pairs where a bf16 context's norm wrote
/// them.
enum Act {
    F32(Tensor),
    Bf16(Bf16Tensor),
}

impl Act {
    fn shape(&self) -> Shape5 {
        match self {
            Act::F32(t) => t.shape(),
            Act::Bf16(t) => t.shape(),
        }
    }

    /// What a convolution reads.
    fn input(&self) -> ConvInput<'_> {
        match self {
            Act::F32(t) => ConvInput::F32(t),
            Act::Bf16(t) => ConvInput::Bf16(t),
        }
    }
}

impl UNet {
    /// A fused unit: convolution of `x`, then norm and activation. `x` is freed right after
    /// the convolution (before a bf16 norm's second buffer exists) unless `keep`, when it is
    /// handed back (a skip).
    fn unit_infer(
        &self,
        ctx: &Ctx,
        u: &Unit,
        x: Act,
        keep: bool,
        live: &mut Live,
        name: &str,
    ) -> Result<(Act, Option<Act>)> {
        let cfg = self.config();
        let shape = u
            .conv
            .spec
            .output_shape(x.shape(), u.conv.weight.cout())
            .layer(name)?;
        let mut y = live.take(shape, name)?;
        live.start();
        // Convolution, then norm and activation in place: measured faster than the engine's
        // former conv with the statistics in its epilogue (see the engine's `fused` module).
        conv3d_forward_into(
            ctx,
            x.input(),
            &u.conv.weight,
            Some(&u.conv.bias),
            &u.conv.spec,
            &mut y,
        )
        .layer(name)?;
        let kept = if keep {
            Some(x)
        } else {
            live.free_act(x);
            None
        };
        let out = norm_act(ctx, y, &u.norm_act(cfg), live, name)?;
        live.done(format!("{name}.conv_norm_act"));
        Ok((out, kept))
    }

    /// Inference forward of `x` (`[N, D, H, W, in_channels]`, consumed so that it can be freed
    /// early): the main head's logits `[N, D, H, W, classes]` and the peak of live activations.
    pub fn infer(&self, ctx: &Ctx, x: Tensor) -> Result<(Tensor, InferenceStats)> {
        self.infer_with(ctx, x, &mut InferWorkspace::new())
    }

    /// [`UNet::infer`] with buffers kept in `ws` between calls (hand the logits back with
    /// [`InferWorkspace::recycle`] when done with them). Live plus spare bytes never exceed
    /// the largest live peak `ws` has seen, so the resident peak is that of one inference.
    pub fn infer_with(
        &self,
        ctx: &Ctx,
        x: Tensor,
        ws: &mut InferWorkspace,
    ) -> Result<(Tensor, InferenceStats)> {
        let mut live = Live::from_workspace(ws);
        let out = self.infer_live(ctx, x, &mut live);
        let peak = live.peak;
        let fresh = live.fresh;
        let steps = std::mem::take(&mut live.steps);
        live.into_workspace(ws);
        let logits = out?;
        Ok((
            logits,
            InferenceStats {
                peak_activation_bytes: peak,
                step_secs: steps,
                fresh_bytes: fresh,
            },
        ))
    }

    fn infer_live(&self, ctx: &Ctx, x: Tensor, live: &mut Live) -> Result<Tensor> {
        let cfg = self.config();
        let s = x.shape();
        cfg.check_input(s.spatial(), s.c)?;
        let levels = cfg.levels();
        live.alloc_len(x.data().len());
        let mut skips: Vec<Option<Act>> = Vec::with_capacity(levels);
        let mut cur = Act::F32(x);
        for (l, units) in self.encoder.iter().enumerate() {
            for (i, u) in units.iter().enumerate() {
                let name = format!("encoder.{l}.conv{}", i + 1);
                // A level's output is the next level's input and also its skip: keep it.
                let (y, kept) = self.unit_infer(ctx, u, cur, i == 0 && l > 0, live, &name)?;
                if kept.is_some() {
                    skips.push(kept);
                }
                cur = y;
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
                skip.input(),
                &w_skip,
                Some(&first.conv.bias),
                &first.conv.spec,
                &mut y,
            )
            .layer(&name)?;
            live.done(format!("{name}.conv_skip"));
            live.free_act(skip);
            let up_name = format!("decoder.{l}.up");
            let up_shape = conv_transpose3d_output_shape(
                cur.shape(),
                d.up.weight.kernel(),
                d.up.weight.cout(),
            );
            let mut up = live.take(up_shape, &up_name)?;
            live.start();
            conv_transpose3d_forward_into(
                ctx,
                cur.input(),
                &d.up.weight,
                Some(&d.up.bias),
                &mut up,
            )
            .layer(&up_name)?;
            live.done(up_name);
            live.start();
            conv3d_forward_accumulate(ctx, &up, &w_up, None, &first.conv.spec, &mut y)
                .layer(&name)?;
            live.done(format!("{name}.conv_up"));
            // Freed before the norm: a bf16 norm writes a second buffer.
            live.free(up);
            live.start();
            let y = norm_act(ctx, y, &first.norm_act(cfg), live, &name)?;
            live.done(format!("{name}.norm_act"));
            live.free_act(std::mem::replace(&mut cur, y));
            for (i, u) in d.units.iter().enumerate().skip(1) {
                let name = format!("decoder.{l}.conv{}", i + 1);
                cur = self.unit_infer(ctx, u, cur, false, live, &name)?.0;
            }
        }
        let h = &self.head;
        let head_shape = h
            .spec
            .output_shape(cur.shape(), h.weight.cout())
            .layer("head")?;
        let mut logits = live.take(head_shape, "head")?;
        live.start();
        conv3d_forward_into(
            ctx,
            cur.input(),
            &h.weight,
            Some(&h.bias),
            &h.spec,
            &mut logits,
        )
        .layer("head")?;
        live.done("head".into());
        live.free_act(cur);
        Ok(logits)
    }
}

/// Norm and activation of a convolution's output `y`: in place in fp32; in a bf16 context
/// written as bf16 channel pairs for the next convolution (and `y` freed).
fn norm_act(ctx: &Ctx, mut y: Tensor, norm: &NormAct, live: &mut Live, name: &str) -> Result<Act> {
    if ctx.bf16_kernel().is_none() {
        instance_norm_act_inplace(ctx, &mut y, norm).layer(name)?;
        return Ok(Act::F32(y));
    }
    let mut out = live.take_bf16(y.shape(), name)?;
    instance_norm_act_to_bf16(ctx, &y, norm, &mut out).layer(name)?;
    live.free(y);
    Ok(Act::Bf16(out))
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

impl Unit {
    /// This unit's norm and activation parameters for the engine.
    fn norm_act<'a>(&'a self, cfg: &crate::UNetConfig) -> NormAct<'a> {
        NormAct {
            gamma: &self.norm.gamma,
            beta: &self.norm.beta,
            eps: cfg.norm_eps(),
            slope: cfg.slope(),
        }
    }
}

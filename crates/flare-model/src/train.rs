//! Training: a forward pass that keeps what backward needs, backward to every parameter, the
//! segmentation loss (the engine's cross-entropy + soft Dice, with deep supervision) and an
//! optimiser step (the engine's SGD or AdamW over every parameter buffer).
//!
//! What is kept per unit (conv -> instance norm -> LeakyReLU): the convolution output `z` (the
//! norm's backward input), the norm statistics, and the activation `a` (LeakyReLU's backward
//! reads the sign of its output, the next convolution's weight gradient reads the values). The
//! normalised-but-not-activated tensor is never stored, and neither is the decoder's
//! `concat([up, skip])`: the first decoder convolution runs as the sum of a convolution of `up`
//! and one of `skip` (the skip is the encoder's stored output anyway), and its backward splits
//! the same way. Gradients come back in a [`UNet`]-shaped
//! container, so they pair with parameters through [`UNet::slots`].

use flare_engine::{
    AdamState, AdamW, Conv3dWeight, Ctx, NormAct, NormStats, Sgd, SgdState, Shape5, Tensor,
    add_inplace, conv_transpose3d_backward_data, conv_transpose3d_backward_weight,
    conv_transpose3d_forward, conv3d_backward_data, conv3d_backward_weight, conv3d_forward,
    conv3d_forward_accumulate, cross_entropy, instance_norm_act_backward,
    instance_norm_act_forward, soft_dice,
};

use crate::{Conv, ModelError, Result, UNet, Unit, error::LayerContext};

/// What one unit keeps for backward.
#[derive(Clone, Debug)]
struct UnitCache {
    z: Tensor,
    stats: NormStats,
    a: Tensor,
}

/// One decoder level's saved tensors.
#[derive(Clone, Debug)]
struct DecCache {
    /// The upsampled tensor (the first half of the virtual concat).
    up: Tensor,
    units: Vec<UnitCache>,
}

/// Everything a training forward pass keeps, and its outputs.
#[derive(Clone, Debug)]
pub struct Forward {
    x: Tensor,
    enc: Vec<Vec<UnitCache>>,
    /// Indexed by level, like [`UNet::decoder`].
    dec: Vec<DecCache>,
    /// Logits of the main head, `[N, D, H, W, classes]`.
    pub logits: Tensor,
    /// Logits of the deep-supervision heads: (decoder level, logits at that level's grid).
    pub ds_logits: Vec<(usize, Tensor)>,
}

fn unit_forward(
    ctx: &Ctx,
    u: &Unit,
    x: &Tensor,
    eps: f32,
    slope: f32,
    name: &str,
) -> Result<UnitCache> {
    let z = conv3d_forward(ctx, x, &u.conv.weight, Some(&u.conv.bias), &u.conv.spec).layer(name)?;
    norm_act_forward(ctx, u, z, eps, slope, name)
}

/// The first decoder unit on the virtual concat `[up, skip]`.
fn concat_unit_forward(
    ctx: &Ctx,
    u: &Unit,
    up: &Tensor,
    skip: &Tensor,
    eps: f32,
    slope: f32,
    name: &str,
) -> Result<UnitCache> {
    let (w_up, w_skip) = u
        .conv
        .weight
        .split_input_channels(up.shape().c)
        .layer(name)?;
    let mut z = conv3d_forward(ctx, up, &w_up, Some(&u.conv.bias), &u.conv.spec).layer(name)?;
    conv3d_forward_accumulate(ctx, skip, &w_skip, None, &u.conv.spec, &mut z).layer(name)?;
    norm_act_forward(ctx, u, z, eps, slope, name)
}

fn norm_act_forward(
    ctx: &Ctx,
    u: &Unit,
    z: Tensor,
    eps: f32,
    slope: f32,
    name: &str,
) -> Result<UnitCache> {
    let norm = NormAct {
        gamma: &u.norm.gamma,
        beta: &u.norm.beta,
        eps,
        slope,
    };
    let (a, stats) = instance_norm_act_forward(ctx, &z, &norm).layer(name)?;
    Ok(UnitCache { z, stats, a })
}

/// Backward through one unit: fills the unit's gradients in `g`, returns the input gradient
/// (or `None` when `need_input` is false: the network input needs none).
#[allow(clippy::too_many_arguments)]
fn unit_backward(
    ctx: &Ctx,
    u: &Unit,
    c: &UnitCache,
    input: &Tensor,
    ga: &Tensor,
    slope: f32,
    g: &mut Unit,
    need_input: bool,
    name: &str,
) -> Result<Option<Tensor>> {
    let gz = norm_act_backward(ctx, u, c, ga, slope, g, name)?;
    let cg = conv3d_backward_weight(ctx, input, &gz, &u.conv.spec).layer(name)?;
    g.conv.weight = cg.weight;
    g.conv.bias = cg.bias;
    if need_input {
        let gx = conv3d_backward_data(ctx, &gz, &u.conv.weight, &u.conv.spec, input.shape())
            .layer(name)?;
        Ok(Some(gx))
    } else {
        Ok(None)
    }
}

/// Backward through LeakyReLU and the norm: fills the norm's gradients, returns the gradient
/// of the convolution output.
fn norm_act_backward(
    ctx: &Ctx,
    u: &Unit,
    c: &UnitCache,
    ga: &Tensor,
    slope: f32,
    g: &mut Unit,
    name: &str,
) -> Result<Tensor> {
    // With a positive slope the output has the input's sign, so `a` stands in for the input.
    let ng = instance_norm_act_backward(ctx, &c.z, &c.a, &c.stats, &u.norm.gamma, ga, slope)
        .layer(name)?;
    g.norm.gamma = ng.gamma;
    g.norm.beta = ng.beta;
    Ok(ng.input)
}

/// Backward through the first decoder unit on the virtual concat `[up, skip]`: fills the
/// unit's gradients, returns the gradients of `up` and `skip`.
#[allow(clippy::too_many_arguments)]
fn concat_unit_backward(
    ctx: &Ctx,
    u: &Unit,
    c: &UnitCache,
    up: &Tensor,
    skip: &Tensor,
    ga: &Tensor,
    slope: f32,
    g: &mut Unit,
    name: &str,
) -> Result<(Tensor, Tensor)> {
    let gz = norm_act_backward(ctx, u, c, ga, slope, g, name)?;
    let spec = &u.conv.spec;
    let (w_up, w_skip) = u
        .conv
        .weight
        .split_input_channels(up.shape().c)
        .layer(name)?;
    let gu = conv3d_backward_weight(ctx, up, &gz, spec).layer(name)?;
    let gs = conv3d_backward_weight(ctx, skip, &gz, spec).layer(name)?;
    g.conv.weight = Conv3dWeight::concat_input_channels(&gu.weight, &gs.weight).layer(name)?;
    // Both halves see the same output gradient, so either bias gradient is the bias's.
    g.conv.bias = gu.bias;
    let g_up = conv3d_backward_data(ctx, &gz, &w_up, spec, up.shape()).layer(name)?;
    let g_skip = conv3d_backward_data(ctx, &gz, &w_skip, spec, skip.shape()).layer(name)?;
    Ok((g_up, g_skip))
}

/// Backward through a 1x1x1 head; returns the input gradient.
fn head_backward(
    ctx: &Ctx,
    h: &Conv,
    input: &Tensor,
    gy: &Tensor,
    g: &mut Conv,
    name: &str,
) -> Result<Tensor> {
    let cg = conv3d_backward_weight(ctx, input, gy, &h.spec).layer(name)?;
    g.weight = cg.weight;
    g.bias = cg.bias;
    conv3d_backward_data(ctx, gy, &h.weight, &h.spec, input.shape()).layer(name)
}

fn accumulate(slot: &mut Option<Tensor>, g: Tensor, ctx: &Ctx, name: &str) -> Result<()> {
    match slot {
        Some(s) => add_inplace(ctx, s, &g).layer(name),
        None => {
            *slot = Some(g);
            Ok(())
        }
    }
}

impl UNet {
    /// Training forward pass over `x` (`[N, D, H, W, in_channels]`), keeping what
    /// [`UNet::backward`] needs.
    pub fn forward_train(&self, ctx: &Ctx, x: Tensor) -> Result<Forward> {
        let cfg = self.config();
        let s = x.shape();
        cfg.check_input(s.spatial(), s.c)?;
        let (eps, slope) = (cfg.norm_eps(), cfg.slope());
        let levels = cfg.levels();
        let mut enc: Vec<Vec<UnitCache>> = Vec::with_capacity(levels);
        for (l, units) in self.encoder.iter().enumerate() {
            let mut caches: Vec<UnitCache> = Vec::with_capacity(units.len());
            for (i, u) in units.iter().enumerate() {
                let input = match (caches.last(), l) {
                    (Some(c), _) => &c.a,
                    (None, 0) => &x,
                    (None, _) => last_a(&enc[l - 1])?,
                };
                let name = format!("encoder.{l}.conv{}", i + 1);
                caches.push(unit_forward(ctx, u, input, eps, slope, &name)?);
            }
            enc.push(caches);
        }
        let mut dec: Vec<Option<DecCache>> = vec![None; levels.saturating_sub(1)];
        let mut ds_logits = Vec::new();
        for l in (0..levels.saturating_sub(1)).rev() {
            let below = match dec.get(l + 1).and_then(|d| d.as_ref()) {
                Some(d) => last_a(&d.units)?,
                None => last_a(&enc[l + 1])?,
            };
            let d = &self.decoder[l];
            let name = format!("decoder.{l}.up");
            let up = conv_transpose3d_forward(ctx, below, &d.up.weight, Some(&d.up.bias))
                .layer(&name)?;
            let skip = last_a(&enc[l])?;
            let mut caches: Vec<UnitCache> = Vec::with_capacity(d.units.len());
            for (i, u) in d.units.iter().enumerate() {
                let name = format!("decoder.{l}.conv{}", i + 1);
                let cache = match caches.last() {
                    Some(c) => unit_forward(ctx, u, &c.a, eps, slope, &name)?,
                    None => concat_unit_forward(ctx, u, &up, skip, eps, slope, &name)?,
                };
                caches.push(cache);
            }
            if let Some((_, h)) = self.ds.iter().find(|(dl, _)| *dl == l) {
                let y = conv3d_forward(ctx, last_a(&caches)?, &h.weight, Some(&h.bias), &h.spec)
                    .layer(&format!("ds.{l}"))?;
                ds_logits.push((l, y));
            }
            dec[l] = Some(DecCache { up, units: caches });
        }
        let dec: Vec<DecCache> = dec.into_iter().flatten().collect();
        let top = match dec.first() {
            Some(d) => last_a(&d.units)?,
            None => last_a(&enc[0])?,
        };
        let h = &self.head;
        let logits = conv3d_forward(ctx, top, &h.weight, Some(&h.bias), &h.spec).layer("head")?;
        ds_logits.sort_by_key(|(l, _)| *l);
        Ok(Forward {
            x,
            enc,
            dec,
            logits,
            ds_logits,
        })
    }

    /// Backward from the gradients of the main logits and of each deep-supervision head's
    /// logits (same order as [`Forward::ds_logits`]); returns the gradient of every parameter
    /// in a network-shaped container.
    pub fn backward(
        &self,
        ctx: &Ctx,
        fwd: &Forward,
        g_logits: &Tensor,
        g_ds: &[(usize, Tensor)],
    ) -> Result<UNet> {
        let cfg = self.config();
        let slope = cfg.slope();
        let levels = cfg.levels();
        if g_logits.shape() != fwd.logits.shape() {
            return Err(ModelError::Input(format!(
                "logit gradient has shape {}, logits have {}",
                g_logits.shape(),
                fwd.logits.shape()
            )));
        }
        let units = cfg.convs_per_block;
        let same_structure = fwd.enc.len() == levels
            && fwd.dec.len() == levels.saturating_sub(1)
            && fwd.enc.iter().all(|e| e.len() == units)
            && fwd.dec.iter().all(|d| d.units.len() == units);
        if !same_structure {
            return Err(ModelError::Input(
                "the forward pass was made by a network of another architecture".into(),
            ));
        }
        let ds_match = g_ds.len() == fwd.ds_logits.len()
            && g_ds
                .iter()
                .zip(&fwd.ds_logits)
                .all(|((a, ga), (b, y))| a == b && ga.shape() == y.shape());
        if !ds_match {
            return Err(ModelError::Input(
                "deep-supervision gradients do not match the forward pass's heads".into(),
            ));
        }
        let mut g = UNet::zeros(cfg)?;
        // Gradient of each decoder level's output, and of each encoder level's output.
        let mut g_dec: Vec<Option<Tensor>> = vec![None; levels.saturating_sub(1)];
        let mut g_enc: Vec<Option<Tensor>> = vec![None; levels];
        let top = match fwd.dec.first() {
            Some(d) => last_a(&d.units)?,
            None => last_a(&fwd.enc[0])?,
        };
        let gtop = head_backward(ctx, &self.head, top, g_logits, &mut g.head, "head")?;
        if levels > 1 {
            g_dec[0] = Some(gtop);
        } else {
            g_enc[0] = Some(gtop);
        }
        for (l, gy) in g_ds {
            let name = format!("ds.{l}");
            let idx = self.ds.iter().position(|(dl, _)| dl == l).ok_or_else(|| {
                ModelError::Input(format!("no deep-supervision head at level {l}"))
            })?;
            let input = last_a(&fwd.dec[*l].units)?;
            let gx = head_backward(ctx, &self.ds[idx].1, input, gy, &mut g.ds[idx].1, &name)?;
            accumulate(&mut g_dec[*l], gx, ctx, &name)?;
        }
        for l in 0..levels.saturating_sub(1) {
            let d = &self.decoder[l];
            let cache = &fwd.dec[l];
            let mut ga = g_dec[l].take().ok_or_else(|| {
                ModelError::Input(format!("decoder level {l} received no gradient"))
            })?;
            for i in (1..d.units.len()).rev() {
                let name = format!("decoder.{l}.conv{}", i + 1);
                ga = unit_backward(
                    ctx,
                    &d.units[i],
                    &cache.units[i],
                    &cache.units[i - 1].a,
                    &ga,
                    slope,
                    &mut g.decoder[l].units[i],
                    true,
                    &name,
                )?
                .ok_or_else(|| ModelError::Input(format!("{name}: no input gradient")))?;
            }
            let name = format!("decoder.{l}.conv1");
            let (first, first_cache) = d
                .units
                .first()
                .zip(cache.units.first())
                .ok_or_else(|| ModelError::Config("a block has no units".into()))?;
            let (g_up, g_skip) = concat_unit_backward(
                ctx,
                first,
                first_cache,
                &cache.up,
                last_a(&fwd.enc[l])?,
                &ga,
                slope,
                &mut g.decoder[l].units[0],
                &name,
            )?;
            let name = format!("decoder.{l}.up");
            accumulate(&mut g_enc[l], g_skip, ctx, &name)?;
            let below = match fwd.dec.get(l + 1) {
                Some(dc) => last_a(&dc.units)?,
                None => last_a(&fwd.enc[l + 1])?,
            };
            let wg = conv_transpose3d_backward_weight(ctx, below, &g_up, d.up.weight.kernel())
                .layer(&name)?;
            g.decoder[l].up.weight = wg.weight;
            g.decoder[l].up.bias = wg.bias;
            let gb = conv_transpose3d_backward_data(ctx, &g_up, &d.up.weight, below.shape())
                .layer(&name)?;
            if l + 1 < levels - 1 {
                accumulate(&mut g_dec[l + 1], gb, ctx, &name)?;
            } else {
                accumulate(&mut g_enc[l + 1], gb, ctx, &name)?;
            }
        }
        for l in (0..levels).rev() {
            let units = &self.encoder[l];
            let cache = &fwd.enc[l];
            let mut ga = g_enc[l].take().ok_or_else(|| {
                ModelError::Input(format!("encoder level {l} received no gradient"))
            })?;
            for i in (0..units.len()).rev() {
                let input = match (i, l) {
                    (0, 0) => &fwd.x,
                    (0, _) => last_a(&fwd.enc[l - 1])?,
                    _ => &cache[i - 1].a,
                };
                let name = format!("encoder.{l}.conv{}", i + 1);
                let need = !(i == 0 && l == 0);
                match unit_backward(
                    ctx,
                    &units[i],
                    &cache[i],
                    input,
                    &ga,
                    slope,
                    &mut g.encoder[l][i],
                    need,
                    &name,
                )? {
                    Some(gx) if i > 0 => ga = gx,
                    Some(gx) => accumulate(&mut g_enc[l - 1], gx, ctx, &name)?,
                    None => {}
                }
            }
        }
        Ok(g)
    }
}

fn last_a(units: &[UnitCache]) -> Result<&Tensor> {
    units
        .last()
        .map(|c| &c.a)
        .ok_or_else(|| ModelError::Config("a block has no units".into()))
}

/// The segmentation loss: `ce_weight * CE + dice_weight * soft Dice` on each head, heads
/// combined with weights `0.5^level` normalised to sum 1 (nnU-Net's deep supervision).
#[derive(Clone, Debug, PartialEq)]
pub struct LossConfig {
    /// Weight of the cross-entropy term.
    pub ce_weight: f64,
    /// Weight of the soft-Dice term.
    pub dice_weight: f64,
    /// Per-class weights of the cross-entropy (`None`: all 1).
    pub ce_class_weights: Option<Vec<f32>>,
    /// Per-class weights of the Dice term (`None`: all 1; 0 leaves a class out).
    pub dice_class_weights: Option<Vec<f32>>,
    /// Dice smoothing added to numerator and denominator.
    pub dice_smooth: f64,
}

impl Default for LossConfig {
    /// CE + Dice with equal weights, Dice over the foreground classes only (background
    /// weight 0 of 5 classes), smoothing 1e-5.
    fn default() -> LossConfig {
        LossConfig {
            ce_weight: 1.0,
            dice_weight: 1.0,
            ce_class_weights: None,
            dice_class_weights: Some(vec![0.0, 1.0, 1.0, 1.0, 1.0]),
            dice_smooth: 1e-5,
        }
    }
}

/// Labels subsampled by `f` per axis (voxel `i * f` of each axis; PyTorch's
/// `labels[:, ::f0, ::f1, ::f2]`), the targets of a deep-supervision head.
pub fn downsample_labels(labels: &[u8], s: Shape5, f: [usize; 3]) -> Result<(Vec<u8>, Shape5)> {
    if labels.len() != s.voxels() || f.contains(&0) {
        return Err(ModelError::Input(format!(
            "{} labels for grid {s}, factor {f:?}",
            labels.len()
        )));
    }
    let o = Shape5::new(
        s.n,
        s.d.div_ceil(f[0]),
        s.h.div_ceil(f[1]),
        s.w.div_ceil(f[2]),
        1,
    );
    let mut out = Vec::with_capacity(o.voxels());
    for n in 0..s.n {
        for d in 0..o.d {
            for h in 0..o.h {
                for w in 0..o.w {
                    out.push(labels[((n * s.d + d * f[0]) * s.h + h * f[1]) * s.w + w * f[2]]);
                }
            }
        }
    }
    Ok((out, o))
}

/// Loss of one head and its logit gradient (scaled by `scale`).
fn head_loss(
    ctx: &Ctx,
    logits: &Tensor,
    labels: &[u8],
    cfg: &LossConfig,
    scale: f64,
) -> Result<(f64, Tensor)> {
    let ce = cross_entropy(ctx, logits, labels, cfg.ce_class_weights.as_deref()).layer("loss")?;
    let dice = soft_dice(
        ctx,
        logits,
        labels,
        cfg.dice_class_weights.as_deref(),
        cfg.dice_smooth,
    )
    .layer("loss")?;
    let (a, b) = (
        (cfg.ce_weight * scale) as f32,
        (cfg.dice_weight * scale) as f32,
    );
    let mut g = ce.grad;
    for (x, &y) in g.data_mut().iter_mut().zip(dice.grad.data()) {
        *x = a * *x + b * y;
    }
    Ok((
        scale * (cfg.ce_weight * ce.loss + cfg.dice_weight * dice.loss),
        g,
    ))
}

/// A loss value and the logit gradients to pass to [`UNet::backward`].
#[derive(Clone, Debug)]
pub struct LossGrads {
    /// The loss over all heads.
    pub loss: f64,
    /// Gradient with respect to the main logits.
    pub logits: Tensor,
    /// Gradients with respect to each deep-supervision head's logits (decoder level, grad).
    pub ds: Vec<(usize, Tensor)>,
}

impl Forward {
    /// The loss over all heads against `labels` (one class per voxel of the input grid, in
    /// voxel order) and its logit gradients.
    pub fn loss(
        &self,
        ctx: &Ctx,
        net: &UNet,
        labels: &[u8],
        cfg: &LossConfig,
    ) -> Result<LossGrads> {
        let s = self.logits.shape();
        // Cumulative stride at each level: the factor its head's grid is smaller by.
        let mut factors = vec![[1usize; 3]];
        for st in net.config().strides.iter().skip(1) {
            let p = factors[factors.len() - 1];
            factors.push([p[0] * st[0], p[1] * st[1], p[2] * st[2]]);
        }
        let mut weights = vec![1.0f64];
        weights.extend(self.ds_logits.iter().map(|(l, _)| 0.5f64.powi(*l as i32)));
        let total: f64 = weights.iter().sum();
        let (mut loss, g_main) = head_loss(ctx, &self.logits, labels, cfg, weights[0] / total)?;
        let mut g_ds = Vec::new();
        for ((l, y), w) in self.ds_logits.iter().zip(&weights[1..]) {
            let f = factors.get(*l).copied().unwrap_or([1; 3]);
            let (lab, _) = downsample_labels(labels, s, f)?;
            let (v, g) = head_loss(ctx, y, &lab, cfg, w / total)?;
            loss += v;
            g_ds.push((*l, g));
        }
        Ok(LossGrads {
            loss,
            logits: g_main,
            ds: g_ds,
        })
    }
}

/// An optimiser over every parameter of a network: hyper-parameters and per-parameter state.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Optimizer {
    /// SGD with momentum (optionally Nesterov) and L2 weight decay.
    Sgd(Sgd, Vec<SgdState>),
    /// AdamW.
    AdamW(AdamW, Vec<AdamState>),
}

impl Optimizer {
    /// SGD state for every parameter of `net`.
    pub fn sgd(net: &UNet, hp: Sgd) -> Optimizer {
        Optimizer::Sgd(
            hp,
            net.slots().iter().map(|s| SgdState::new(s.len())).collect(),
        )
    }

    /// AdamW state for every parameter of `net`.
    pub fn adamw(net: &UNet, hp: AdamW) -> Optimizer {
        Optimizer::AdamW(
            hp,
            net.slots()
                .iter()
                .map(|s| AdamState::new(s.len()))
                .collect(),
        )
    }

    /// AdamW restored from saved state (a checkpoint's): one [`AdamState`] per parameter of
    /// `net`, in [`UNet::slots`] order, each of its parameter's length.
    pub fn adamw_from_states(net: &UNet, hp: AdamW, states: Vec<AdamState>) -> Result<Optimizer> {
        let slots = net.slots();
        let fits = states.len() == slots.len()
            && states
                .iter()
                .zip(&slots)
                .all(|(st, p)| st.moments().0.len() == p.len());
        if !fits {
            return Err(ModelError::Input(format!(
                "optimiser state for {} parameters does not fit the network's {}",
                states.len(),
                slots.len()
            )));
        }
        Ok(Optimizer::AdamW(hp, states))
    }

    /// AdamW's per-parameter state in [`UNet::slots`] order, what a checkpoint saves (`None`
    /// for SGD).
    pub fn adam_states(&self) -> Option<&[AdamState]> {
        match self {
            Optimizer::AdamW(_, st) => Some(st),
            Optimizer::Sgd(..) => None,
        }
    }

    /// One update of every parameter of `net` from `grads` (from [`UNet::backward`]).
    pub fn step(&mut self, net: &mut UNet, grads: &UNet, lr: f32) -> Result<()> {
        if net.config() != grads.config() {
            return Err(ModelError::Input(
                "gradients are for another architecture".into(),
            ));
        }
        let gs = grads.slots();
        let names = net.config().specs_of_valid();
        let states = match self {
            Optimizer::Sgd(_, st) => st.len(),
            Optimizer::AdamW(_, st) => st.len(),
        };
        if states != gs.len() {
            return Err(ModelError::Input(format!(
                "optimiser holds state for {states} parameters, the network has {}",
                gs.len()
            )));
        }
        for (i, p) in net.slots_mut().into_iter().enumerate() {
            let name = &names[i].name;
            match self {
                Optimizer::Sgd(hp, st) => hp.step(p, gs[i], &mut st[i], lr).layer(name)?,
                Optimizer::AdamW(hp, st) => hp.step(p, gs[i], &mut st[i], lr).layer(name)?,
            }
        }
        Ok(())
    }
}

/// One training step: forward, loss, backward, optimiser update. Returns the loss; a loss
/// that is not finite is [`ModelError::NonFiniteLoss`], before anything is updated.
pub fn train_step(
    ctx: &Ctx,
    net: &mut UNet,
    opt: &mut Optimizer,
    x: Tensor,
    labels: &[u8],
    loss: &LossConfig,
    lr: f32,
) -> Result<f64> {
    let fwd = net.forward_train(ctx, x)?;
    let lg = fwd.loss(ctx, net, labels, loss)?;
    if !lg.loss.is_finite() {
        return Err(ModelError::NonFiniteLoss(lg.loss));
    }
    let grads = net.backward(ctx, &fwd, &lg.logits, &lg.ds)?;
    drop(fwd);
    opt.step(net, &grads, lr)?;
    Ok(lg.loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UNetConfig;

    /// Every parameter buffer is paired with its own gradient and state: after one AdamW step
    /// from fresh state, each value moved by `lr * sign(g)` (Adam's first step) plus decay.
    #[test]
    fn adamw_updates_every_parameter_with_its_own_gradient() {
        let cfg = UNetConfig::standard(1, 5, &[4, 8]);
        let mut net = UNet::init(&cfg, 1).unwrap();
        let before = net.clone();
        let mut grads = UNet::zeros(&cfg).unwrap();
        for (i, g) in grads.slots_mut().into_iter().enumerate() {
            for (j, v) in g.iter_mut().enumerate() {
                // Signs vary by parameter and element, so a mis-paired buffer shows.
                *v = if (i + j) % 3 == 0 { -0.5 } else { 0.25 };
            }
        }
        let hp = AdamW {
            weight_decay: 0.1,
            ..AdamW::default()
        };
        let mut opt = Optimizer::adamw(&net, hp);
        let lr = 0.01f32;
        opt.step(&mut net, &grads, lr).unwrap();
        for (i, (after, (b, g))) in net
            .slots()
            .iter()
            .zip(before.slots().iter().zip(grads.slots()))
            .enumerate()
        {
            for j in 0..after.len() {
                let want = b[j] * (1.0 - lr * 0.1) - lr * g[j].signum();
                assert!((after[j] - want).abs() < 1e-6, "slot {i} element {j}");
            }
        }
        let other = UNet::zeros(&UNetConfig::standard(1, 5, &[4, 8, 16])).unwrap();
        assert!(opt.step(&mut net, &other, lr).is_err());
        let mut big = other.clone();
        assert!(opt.step(&mut big, &other, lr).is_err());
    }

    /// AdamW's saved state resumes bit for bit: three steps, the states saved and restored into
    /// a new optimiser, two more steps, equal five steps taken at once.
    #[test]
    fn adamw_resumes_bit_for_bit_from_its_saved_states() {
        let cfg = UNetConfig::standard(1, 5, &[4, 8]);
        let net0 = UNet::init(&cfg, 3).unwrap();
        let mut grads = UNet::zeros(&cfg).unwrap();
        for (i, g) in grads.slots_mut().into_iter().enumerate() {
            for (j, v) in g.iter_mut().enumerate() {
                *v = ((i * 31 + j * 7) % 13) as f32 * 0.01 - 0.06;
            }
        }
        let hp = AdamW::default();
        let (mut a, mut b) = (net0.clone(), net0.clone());
        let mut whole = Optimizer::adamw(&a, hp);
        for _ in 0..5 {
            whole.step(&mut a, &grads, 1e-3).unwrap();
        }
        let mut first = Optimizer::adamw(&b, hp);
        for _ in 0..3 {
            first.step(&mut b, &grads, 1e-3).unwrap();
        }
        let saved: Vec<AdamState> = first
            .adam_states()
            .unwrap()
            .iter()
            .map(|st| {
                let (m, v) = st.moments();
                AdamState::from_parts(m.to_vec(), v.to_vec(), st.steps()).unwrap()
            })
            .collect();
        assert!(saved.iter().all(|st| st.steps() == 3));
        drop(first);
        let mut resumed = Optimizer::adamw_from_states(&b, hp, saved).unwrap();
        for _ in 0..2 {
            resumed.step(&mut b, &grads, 1e-3).unwrap();
        }
        assert_eq!(a.slots(), b.slots());
        assert_ne!(a.slots(), net0.slots());
        // State for another architecture is refused.
        let other = UNet::zeros(&UNetConfig::standard(1, 5, &[4, 8, 16])).unwrap();
        let states = resumed.adam_states().unwrap().to_vec();
        assert!(Optimizer::adamw_from_states(&other, hp, states).is_err());
        assert!(
            Optimizer::sgd(
                &other,
                Sgd {
                    momentum: 0.9,
                    nesterov: false,
                    weight_decay: 0.0,
                },
            )
            .adam_states()
            .is_none()
        );
    }
}

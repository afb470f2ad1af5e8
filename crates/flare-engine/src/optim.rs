//! Optimisers (SGD with momentum and Nesterov, AdamW) and learning-rate schedules (poly,
//! cosine), with PyTorch's exact update rules so a training run can be checked step by step.
//!
//! An optimiser is the hyper-parameters; each parameter tensor keeps its own state (momentum
//! buffer, Adam moments), and `step` updates one parameter slice from its gradient at a given
//! learning rate, so a model steps its parameters one by one with the schedule's rate.

use crate::{EngineError, Result};

fn check(op: &'static str, params: &[f32], grads: &[f32], state: usize) -> Result<()> {
    if params.len() != grads.len() || state != params.len() {
        return Err(EngineError::Shape {
            op,
            detail: format!(
                "{} parameters, {} gradients, state for {state}",
                params.len(),
                grads.len()
            ),
        });
    }
    Ok(())
}

/// SGD hyper-parameters (PyTorch's `torch.optim.SGD`, dampening 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Momentum factor (0 disables momentum).
    pub momentum: f32,
    /// Nesterov momentum (needs `momentum > 0`).
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
}

/// Per-parameter SGD state.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdState {
    buf: Vec<f32>,
    started: bool,
}

impl SgdState {
    /// Fresh state for a parameter of `len` values.
    pub fn new(len: usize) -> SgdState {
        SgdState {
            buf: vec![0.0; len],
            started: false,
        }
    }
}

impl Sgd {
    /// One update of `params` from `grads` at learning rate `lr`.
    pub fn step(
        &self,
        params: &mut [f32],
        grads: &[f32],
        state: &mut SgdState,
        lr: f32,
    ) -> Result<()> {
        check("sgd", params, grads, state.buf.len())?;
        let (m, wd) = (self.momentum, self.weight_decay);
        for ((p, &g), b) in params.iter_mut().zip(grads).zip(state.buf.iter_mut()) {
            let mut d = g + wd * *p;
            if m != 0.0 {
                *b = if state.started { m * *b + d } else { d };
                d = if self.nesterov { d + m * *b } else { *b };
            }
            *p -= lr * d;
        }
        state.started = true;
        Ok(())
    }
}

/// AdamW hyper-parameters (PyTorch's `torch.optim.AdamW`, no amsgrad).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    fn default() -> AdamW {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Per-parameter AdamW state.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamState {
    m: Vec<f32>,
    v: Vec<f32>,
    t: u32,
}

impl AdamState {
    /// Fresh state for a parameter of `len` values.
    pub fn new(len: usize) -> AdamState {
        AdamState {
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    /// State restored from a checkpoint: first and second moments and the updates taken.
    pub fn from_parts(m: Vec<f32>, v: Vec<f32>, t: u32) -> Result<AdamState> {
        if m.len() != v.len() {
            return Err(EngineError::Shape {
                op: "adamw",
                detail: format!("{} first moments but {} second moments", m.len(), v.len()),
            });
        }
        Ok(AdamState { m, v, t })
    }

    /// The moments and update count, for saving (the inverse of [`AdamState::from_parts`]).
    pub fn into_parts(self) -> (Vec<f32>, Vec<f32>, u32) {
        (self.m, self.v, self.t)
    }

    /// First and second moments, for saving without giving the state up.
    pub fn moments(&self) -> (&[f32], &[f32]) {
        (&self.m, &self.v)
    }

    /// Updates taken (Adam's `t`).
    pub fn steps(&self) -> u32 {
        self.t
    }
}

impl AdamW {
    /// One update of `params` from `grads` at learning rate `lr`.
    pub fn step(
        &self,
        params: &mut [f32],
        grads: &[f32],
        state: &mut AdamState,
        lr: f32,
    ) -> Result<()> {
        check("adamw", params, grads, state.m.len())?;
        state.t += 1;
        let t = state.t as i32;
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t);
        let step = (lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let decay = 1.0 - lr * self.weight_decay;
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(state.m.iter_mut())
            .zip(state.v.iter_mut())
        {
            *p *= decay;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let denom = v.sqrt() / bc2_sqrt + self.eps;
            *p -= step * *m / denom;
        }
        Ok(())
    }
}

/// A learning-rate schedule over `total` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// `base * (1 - step / total) ^ power` (nnU-Net uses power 0.9), as PyTorch's
    /// `PolynomialLR`.
    Poly {
        /// The exponent.
        power: f64,
    },
    /// `min + (base - min) * (1 + cos(pi * step / total)) / 2`, as PyTorch's
    /// `CosineAnnealingLR`.
    Cosine {
        /// The final rate.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The rate at `step` (0-based) of `total`; steps past `total` keep the final rate.
    pub fn lr(&self, base: f64, step: usize, total: usize) -> f64 {
        let f = if total == 0 {
            1.0
        } else {
            step.min(total) as f64 / total as f64
        };
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Poly { power } => base * (1.0 - f).powf(power),
            LrSchedule::Cosine { min_lr } => {
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * f).cos()) / 2.0
            }
        }
    }
}

//! AdamW whose state this crate owns, and the learning-rate plan (warm-up, then cosine or
//! poly decay).
//!
//! Why not `flare_model::Optimizer`: a checkpoint must save the moments, so this crate keeps
//! them in plain buffers that [`crate::checkpoint`] writes out, and hands them to the engine's
//! `AdamW::step` (PyTorch's `torch.optim.AdamW`) for each update.

use flare_engine::LrSchedule;
use flare_model::UNet;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters (PyTorch's names and defaults, except the weight decay).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    /// Betas (0.9, 0.999), eps 1e-8, weight decay 3e-5 (nnU-Net's; with 12 scans the usual
    /// 0.01 is not what limits overfitting, augmentation is).
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 3e-5,
        }
    }
}

/// AdamW moments for every parameter buffer of a network, in [`UNet::slots`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    /// Hyper-parameters.
    pub config: AdamWConfig,
    /// Updates taken so far (Adam's `t`).
    pub t: u32,
    /// First moments, one buffer per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments, one buffer per parameter.
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// Fresh (zero) moments for `net`.
    pub fn new(net: &UNet, config: AdamWConfig) -> AdamW {
        let m: Vec<Vec<f32>> = net.slots().iter().map(|s| vec![0.0; s.len()]).collect();
        AdamW {
            config,
            t: 0,
            v: m.clone(),
            m,
        }
    }

    /// One update of every parameter of `net` from `grads` (from `UNet::backward`) at `lr`.
    pub fn step(&mut self, net: &mut UNet, grads: &UNet, lr: f32) -> Result<()> {
        if net.config() != grads.config() {
            return Err(TrainError::Config(
                "gradients are for another architecture".into(),
            ));
        }
        let gs = grads.slots();
        let mut ps = net.slots_mut();
        let lens_ok = ps.len() == gs.len()
            && ps.len() == self.m.len()
            && ps.len() == self.v.len()
            && ps
                .iter()
                .zip(&gs)
                .zip(self.m.iter().zip(&self.v))
                .all(|((p, g), (m, v))| {
                    p.len() == g.len() && p.len() == m.len() && p.len() == v.len()
                });
        if !lens_ok {
            return Err(TrainError::Config(
                "optimiser state does not match the network's parameters".into(),
            ));
        }
        let c = self.config;
        let rule = flare_engine::AdamW {
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
        };
        // The engine's update rule on state this crate owns: each buffer's moments move into an
        // engine `AdamState` for the step and back (no copies).
        for (((p, g), m), v) in ps
            .iter_mut()
            .zip(&gs)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            let mut state =
                flare_engine::AdamState::from_parts(std::mem::take(m), std::mem::take(v), self.t)
                    .map_err(|e| TrainError::Config(e.to_string()))?;
            let stepped = rule.step(p, g, &mut state, lr);
            (*m, *v, _) = state.into_parts();
            stepped.map_err(|e| TrainError::Config(e.to_string()))?;
        }
        self.t += 1;
        Ok(())
    }
}

/// The decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Decay {
    /// Cosine from the base rate to `min_lr` (PyTorch's `CosineAnnealingLR`).
    Cosine {
        /// The final rate.
        min_lr: f64,
    },
    /// `base * (1 - t)^power` (nnU-Net: power 0.9).
    Poly {
        /// The exponent.
        power: f64,
    },
}

/// Learning rate per step: linear warm-up from `base / warmup` to `base` over `warmup`
/// steps, then [`Decay`] over the remaining `total - warmup` steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrPlan {
    /// The peak rate.
    pub base: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Steps of the whole schedule.
    pub total: u64,
    /// The decay after warm-up.
    pub decay: Decay,
}

impl LrPlan {
    /// The rate at `step` (0-based); steps past `total` keep the final rate.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        let sched = match self.decay {
            Decay::Cosine { min_lr } => LrSchedule::Cosine { min_lr },
            Decay::Poly { power } => LrSchedule::Poly { power },
        };
        let t = (step - self.warmup) as usize;
        let n = self.total.saturating_sub(self.warmup) as usize;
        sched.lr(self.base, t, n)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !(self.base.is_finite() && self.base > 0.0) {
            return Err(TrainError::Config(format!(
                "learning rate {} must be positive",
                self.base
            )));
        }
        if self.total == 0 {
            return Err(TrainError::Config("0 training steps".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_rises_linearly_then_cosine_reaches_the_floor() {
        let p = LrPlan {
            base: 1e-3,
            warmup: 4,
            total: 14,
            decay: Decay::Cosine { min_lr: 1e-5 },
        };
        assert!((p.lr(0) - 2.5e-4).abs() < 1e-12);
        assert!((p.lr(3) - 1e-3).abs() < 1e-12);
        assert!((p.lr(4) - 1e-3).abs() < 1e-12);
        assert!(p.lr(9) < p.lr(5));
        assert!((p.lr(14) - 1e-5).abs() < 1e-12);
        assert!((p.lr(100) - 1e-5).abs() < 1e-12);
    }

    /// The same rule as the engine's optimiser: one step from fresh state equals
    /// `flare_model::Optimizer::adamw`'s, bit for bit.
    #[test]
    fn matches_the_engines_adamw_bit_for_bit() {
        let cfg = flare_model::UNetConfig::standard(1, 5, &[4, 8]);
        let net0 = UNet::init(&cfg, 3).unwrap();
        let mut grads = UNet::zeros(&cfg).unwrap();
        for (i, g) in grads.slots_mut().into_iter().enumerate() {
            for (j, v) in g.iter_mut().enumerate() {
                *v = ((i * 31 + j * 7) % 13) as f32 * 0.01 - 0.06;
            }
        }
        let c = AdamWConfig::default();
        let hp = flare_engine::AdamW {
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
        };
        let (mut a, mut b) = (net0.clone(), net0.clone());
        let mut ours = AdamW::new(&a, c);
        let mut theirs = flare_model::Optimizer::adamw(&b, hp);
        for _ in 0..3 {
            ours.step(&mut a, &grads, 1e-3).unwrap();
            theirs.step(&mut b, &grads, 1e-3).unwrap();
        }
        assert_eq!(a.slots(), b.slots());
        assert_ne!(a.slots(), net0.slots());
    }
}

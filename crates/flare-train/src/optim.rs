//! The optimiser's settings as a training plan stores them (AdamW hyper-parameters) and the
//! learning-rate plan (warm-up, then cosine or poly decay).
//!
//! The optimiser itself, with its state, is `flare_model::Optimizer` (one for the whole
//! workspace); a checkpoint saves its state through `Optimizer::adam_states`.

use flare_engine::LrSchedule;
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

impl AdamWConfig {
    /// The engine's update rule with these hyper-parameters.
    pub fn rule(&self) -> flare_engine::AdamW {
        flare_engine::AdamW {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
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
}

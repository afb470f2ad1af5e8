//! A run's state apart from its tensors: where it is and how it went (the JSON part of a
//! checkpoint). Its own module so that the checkpoint and the loop both use it without
//! importing each other.

use serde::{Deserialize, Serialize};

use crate::{config::TrainConfig, log::LogRow, sampler::SamplerState};

/// The best validation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// After this step.
    pub step: u64,
    /// Mean Dice over organs.
    pub mean_dsc: f64,
    /// Dice per organ, in the label set's order.
    pub dsc: Vec<f64>,
}

/// A run's state apart from tensors (the JSON part of a checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The run's configuration.
    pub config: TrainConfig,
    /// Steps done (the next step to run).
    pub step: u64,
    /// The sampler's state.
    pub sampler: SamplerState,
    /// AdamW's update count.
    pub adam_t: u32,
    /// Best validation so far.
    pub best: Option<Best>,
    /// Every step's row so far.
    pub log: Vec<LogRow>,
}

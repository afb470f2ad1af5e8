//! flare's 3D U-Net, built on `flare-engine`: the architecture from a serde config, model files
//! (safetensors weights with an embedded JSON model card), a training forward/backward with
//! loss and optimiser step, and a lean inference forward that frees activations early.
//!
//! Layout: activations are the engine's channels-last `[N, D, H, W, C]` f32 tensors;
//! parameters live in the engine's layout in memory and in PyTorch's layout (and names) on
//! disk, so PyTorch can load our files and we can load PyTorch's.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod card;
pub mod config;
mod error;
pub mod file;
pub mod infer;
mod net;
pub mod train;

pub use crate::{
    card::ModelCard,
    config::{Activation, Norm, UNetConfig},
    error::{ModelError, Result},
    infer::{InferWorkspace, InferenceStats, argmax_labels},
    net::{Conv, Decoder, InstanceNorm, UNet, Unit, Up},
    train::{Forward, LossConfig, LossGrads, Optimizer, train_step},
};

//! The JSON model card: what a set of weights is, how to feed it, what it outputs, how it was
//! made.
//!
//! The card travels inside the weights file, as the safetensors header's metadata entry
//! [`CARD_KEY`] (one file to copy, and PyTorch's `safe_open(...).metadata()` reads it); see
//! [`crate::file`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UNetConfig;

/// The card format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The safetensors metadata key that holds the card's JSON.
pub const CARD_KEY: &str = "flare.model_card";

/// How intensities are mapped before the network sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum Normalisation {
    /// Clip to the HU window, then scale it linearly to `[0, 1]`.
    WindowToUnit,
    /// Clip to the HU window, then `(x - mean) / std`.
    ZScore {
        /// Subtracted after clipping.
        mean: f32,
        /// Divided by after subtracting.
        std: f32,
    },
}

/// The grid the network runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum TargetGrid {
    /// The whole scan resampled to a fixed voxel count `[d, h, w]` (`k, j, i`).
    FixedSize {
        /// Voxels per axis, `[d, h, w]`.
        size: [usize; 3],
    },
    /// Resampled to a fixed spacing in millimetres `[d, h, w]`, then tiled by patches.
    Spacing {
        /// Spacing in mm, `[d, h, w]`.
        spacing_mm: [f64; 3],
        /// Patch size `[d, h, w]` the network runs on.
        patch: [usize; 3],
    },
}

/// Input preprocessing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// HU window `[low, high]` the intensities are clipped to.
    pub hu_window: [f32; 2],
    /// Mapping after clipping.
    pub normalisation: Normalisation,
    /// The grid the network sees.
    pub target_grid: TargetGrid,
}

/// One output class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The value written in label maps (= output channel index).
    pub value: u8,
    /// Its name.
    pub name: String,
}

/// How the weights were made. An untrained model has `steps == 0` and empty lists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// `"untrained"`, `"trained"`, or a short status.
    pub status: String,
    /// Training data (case identifiers or dataset names).
    pub data: Vec<String>,
    /// Validation data.
    pub validation: Vec<String>,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Named final metrics (e.g. `val_dice_liver`).
    pub metrics: BTreeMap<String, f64>,
    /// Free-form notes (loss, optimiser, schedule, augmentation, seed, commit).
    pub notes: String,
}

/// The model card (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Card format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The architecture.
    pub architecture: UNetConfig,
    /// Input preprocessing.
    pub preprocessing: Preprocessing,
    /// Output classes, background first.
    pub labels: Vec<Label>,
    /// Provenance.
    pub training: Training,
}

impl ModelCard {
    /// A card for an untrained FLARE model: the 5 FLARE labels, HU window [-125, 275] scaled
    /// to [0, 1], a fixed 64 x 128 x 128 grid (the PyTorch reference's setup).
    pub fn untrained(architecture: UNetConfig) -> ModelCard {
        let labels = ["background", "liver", "kidney", "spleen", "pancreas"]
            .iter()
            .enumerate()
            .map(|(i, n)| Label {
                value: i as u8,
                name: n.to_string(),
            })
            .collect();
        ModelCard {
            format_version: FORMAT_VERSION,
            architecture,
            preprocessing: Preprocessing {
                hu_window: [-125.0, 275.0],
                normalisation: Normalisation::WindowToUnit,
                target_grid: TargetGrid::FixedSize {
                    size: [64, 128, 128],
                },
            },
            labels,
            training: Training {
                status: "untrained".into(),
                ..Training::default()
            },
        }
    }
}

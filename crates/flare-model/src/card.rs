//! The JSON model card: what a set of weights is, how to feed it, what it outputs, how it was
//! made.
//!
//! The card travels inside the weights file, as the safetensors header's metadata entry
//! [`CARD_KEY`] (one file to copy, and PyTorch's `safe_open(...).metadata()` reads it); see
//! [`crate::file`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use flare_labels::{Label, LabelSet};

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
    /// Output classes, background first (value = output channel), each with its names, colour
    /// and post-processing. A card written before these were stored lists only `value` and
    /// `name`; it reads as [`Label::legacy`] says (FLARE21's labels for the built-in model).
    pub labels: LabelSet,
    /// Provenance.
    pub training: Training,
}

impl ModelCard {
    /// A card for an untrained FLARE model: the 5 FLARE labels, HU window [-125, 275] scaled
    /// to [0, 1], a fixed 64 x 128 x 128 grid (the PyTorch reference's setup).
    pub fn untrained(architecture: UNetConfig) -> ModelCard {
        let labels = LabelSet::flare21();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_round_trips_with_its_label_set() {
        let mut card = ModelCard::untrained(UNetConfig::standard(1, 3, &[4, 8]));
        card.labels = LabelSet::new(vec![
            Label::background(),
            Label::organ(1, "tumour"),
            Label {
                components: 2,
                keep_largest_components: false,
                ..Label::organ(2, "cyst")
            },
        ])
        .unwrap();
        let json = serde_json::to_string(&card).unwrap();
        let back: ModelCard = serde_json::from_str(&json).unwrap();
        assert_eq!(back, card);
    }

    #[test]
    fn an_old_card_without_label_rules_reads_as_flare21() {
        let card = ModelCard::untrained(UNetConfig::standard(1, 5, &[4, 8]));
        let mut json: serde_json::Value = serde_json::to_value(&card).unwrap();
        // What cards held before label sets: value and name only.
        json["labels"] = serde_json::json!([
            {"value": 0, "name": "background"}, {"value": 1, "name": "liver"},
            {"value": 2, "name": "kidney"}, {"value": 3, "name": "spleen"},
            {"value": 4, "name": "pancreas"}
        ]);
        let old: ModelCard = serde_json::from_value(json).unwrap();
        assert_eq!(old.labels, LabelSet::flare21());
        assert_eq!(old, card);
    }
}

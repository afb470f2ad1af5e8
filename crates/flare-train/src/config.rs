//! What defines a training run: the stage and the [`TrainConfig`] (network, samples,
//! preprocessing, schedule, optimiser, loss), saved in every checkpoint.

use flare_engine::Precision;
use flare_model::{LossConfig, UNetConfig};
use serde::{Deserialize, Serialize};

use crate::{
    augment::{Crop, SampleConfig},
    cache::PreprocessConfig,
    error::{Result, TrainError},
    optim::{AdamWConfig, Decay, LrPlan},
    validate::ValRegion,
};

/// Which network of the two-stage model a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Localisation: the whole scan on a fixed small grid.
    Whole,
    /// Fine: the organs' region of interest on a fixed grid.
    Roi,
}

/// Everything that defines a training run (saved in every checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The stage.
    pub stage: Stage,
    /// The network.
    pub architecture: UNetConfig,
    /// What a sample looks like (grid, crop, augmentation).
    pub sample: SampleConfig,
    /// The cache's preprocessing.
    pub preprocess: PreprocessConfig,
    /// Samples per step.
    pub batch: usize,
    /// Learning rate per step.
    pub lr: LrPlan,
    /// Optimiser.
    pub adamw: AdamWConfig,
    /// Cross-entropy weight per class (`None`: all 1).
    pub ce_class_weights: Option<Vec<f32>>,
    /// Validate every this many steps (0: only at the end).
    pub val_every: u64,
    /// Seed of the initial weights and of the sampler.
    pub seed: u64,
    /// Training cases.
    pub train_cases: Vec<String>,
    /// Validation cases.
    pub val_cases: Vec<String>,
    /// Where the initial weights came from when they were not drawn from the seed
    /// (fine-tuning: a model file, see [`crate::Trainer::fine_tune`]); `None`: from the seed.
    #[serde(default)]
    pub init_from: Option<String>,
    /// Number format of the convolutions (issue 11): `fp32`, or `bf16` operands with fp32
    /// sums; master weights, norms, losses and the optimiser stay fp32 either way. Checkpoints
    /// written before this field existed trained in fp32, which is its default.
    #[serde(default, with = "precision_text")]
    pub precision: Precision,
}

/// [`Precision`] as its name in the checkpoint's JSON (the engine has no serde).
mod precision_text {
    use flare_engine::Precision;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Precision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl TrainConfig {
    /// The default plan of a stage, `steps` long: a 4-level U-Net (widths 8-16-32-64, 3x3x3,
    /// deep supervision) on 64 x 96 x 96 (stage 1, whole scan) or 64 x 128 x 128 (stage 2,
    /// organ box + 10% margin, pancreas 3x in the cross-entropy), batch 2, AdamW 2e-3 with 50
    /// warm-up steps then cosine to 1e-5.
    /// Sized so that a step takes about a second on one core.
    pub fn default_for(stage: Stage, steps: u64, seed: u64) -> TrainConfig {
        let mut architecture = UNetConfig::standard(1, 5, &[8, 16, 32, 64]);
        architecture.deep_supervision = true;
        let sample = match stage {
            Stage::Whole => SampleConfig::whole_scan([64, 96, 96]),
            // The grid and pancreas weight of the built-in model's stage 2 (TRAINING.md).
            Stage::Roi => SampleConfig::roi([64, 128, 128]),
        };
        TrainConfig {
            stage,
            architecture,
            sample,
            preprocess: PreprocessConfig::default(),
            batch: 2,
            lr: LrPlan {
                base: 2e-3,
                warmup: 50.min(steps / 10),
                total: steps,
                decay: Decay::Cosine { min_lr: 1e-5 },
            },
            adamw: AdamWConfig::default(),
            // Pancreas is the smallest organ and the last one learnt; stage 2 weighs it 3x in
            // the cross-entropy (the Dice term is unweighted).
            ce_class_weights: match stage {
                Stage::Whole => None,
                Stage::Roi => Some(vec![1.0, 1.0, 1.0, 1.0, 3.0]),
            },
            val_every: 200,
            seed,
            train_cases: Vec::new(),
            val_cases: Vec::new(),
            init_from: None,
            precision: Precision::Fp32,
        }
    }

    /// Checks that the pieces fit together before any work starts.
    pub fn validate(&self) -> Result<()> {
        self.architecture.validate()?;
        if self.precision != Precision::Fp32
            && flare_engine::Ctx::new()
                .with_precision(self.precision)
                .precision()
                != self.precision
        {
            return Err(TrainError::Config(format!(
                "this run trains with {} convolutions, which this CPU cannot run (no avx512_bf16)",
                self.precision
            )));
        }
        let [d, h, w] = self.sample.grid_dhw;
        self.architecture
            .check_input([d, h, w], 1)
            .map_err(|e| TrainError::Config(format!("grid {d}x{h}x{w}: {e}")))?;
        if self.architecture.in_channels != 1 || self.architecture.num_classes != 5 {
            return Err(TrainError::Config(
                "the network must take 1 channel (CT) and output 5 classes (FLARE)".into(),
            ));
        }
        self.sample.validate()?;
        self.lr.validate()?;
        if self.batch == 0 {
            return Err(TrainError::Config("batch size 0".into()));
        }
        if let Some(w) = &self.ce_class_weights
            && (w.len() != 5 || w.iter().any(|v| !(v.is_finite() && *v >= 0.0)))
        {
            return Err(TrainError::Config(
                "cross-entropy class weights: 5 non-negative values (background first)".into(),
            ));
        }
        match (self.stage, &self.sample.crop) {
            (Stage::Whole, Crop::WholeScan { .. }) | (Stage::Roi, Crop::Roi { .. }) => Ok(()),
            _ => Err(TrainError::Config(
                "stage 1 samples whole scans, stage 2 organ regions: the crop does not fit the stage"
                    .into(),
            )),
        }
    }

    /// The loss: CE + soft Dice over the four organs.
    pub fn loss(&self) -> LossConfig {
        LossConfig {
            ce_class_weights: self.ce_class_weights.clone(),
            ..LossConfig::default()
        }
    }

    /// The region validation shows the network.
    pub fn val_region(&self) -> ValRegion {
        match self.sample.crop {
            Crop::Roi {
                margin, ref organs, ..
            } => ValRegion::OrganBox {
                margin,
                organs: organs.clone(),
            },
            _ => ValRegion::WholeScan,
        }
    }
}

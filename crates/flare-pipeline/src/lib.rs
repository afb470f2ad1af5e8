//! flare's inference pipeline: a CT in Hounsfield units to an organ label map on the CT's own
//! grid, with a two-stage model.
//!
//! - [`Model`]: both stages' U-Nets with their model cards and the [`PipelinePlan`] that
//!   chains them, in one safetensors file ([`Model::load`], [`Model::save`],
//!   [`Model::from_stage_files`] to combine two `flare train` outputs, [`Model::bundled`] for
//!   the default model built into the program).
//! - [`segment`]: preprocess, stage 1 (coarse organs on the whole scan, their box), stage 2
//!   (the box with a margin, finely), the lean export onto the scan's grid
//!   (`flare_imgproc::argmax_on_grid`), post-processing; timed per step.
//! - [`plausibility`]: whether the input looks like an abdominal CT and the organs found are
//!   adult-sized and in place; warnings only, the labels are never changed.
//! - [`stages`]: each step on its own. Training's validation calls these, so validation Dice
//!   is the Dice of this code.
//!
//! Preprocessing is read from each stage's model card (HU window, normalisation, network
//! grid); this crate never depends on the training crate.
//!
//! ```no_run
//! use flare_pipeline::{Model, SegmentOptions, segment, organ_volumes_ml};
//! # fn scan() -> flare_volume::Volume<f32> { unimplemented!() }
//! let model = Model::bundled()?;
//! let ct = scan(); // HU, any orientation
//! let ctx = flare_engine::Ctx::new();
//! let seg = segment(&ctx, &model, &ct, &SegmentOptions::default(), &mut |_| {})?;
//! assert_eq!(seg.labels.geometry(), ct.geometry());
//! println!("{:?} mL", organ_volumes_ml(&seg.labels, model.labels()));
//! # Ok::<(), flare_pipeline::PipelineError>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod model;
pub mod plausibility;
mod precision;
mod segment;
pub mod stages;

pub use crate::{
    error::{PipelineError, Result},
    model::{
        CARD_KEY_STAGE1, CARD_KEY_STAGE2, CARD_KEY_STAGE3, MAX_STAGE2_MEMBERS, Model, ModelFile,
        PLAN_KEY, PipelinePlan, RefinePlan, RefineRegion, member_card_key,
    },
    precision::PrecisionChoice,
    segment::{
        PostProcess, SegmentOptions, Segmentation, StageTimings, Step, organ_volumes_ml, segment,
    },
};

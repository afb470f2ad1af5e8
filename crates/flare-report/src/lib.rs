//! Visual reports a radiologist reads at a glance.
//!
//! - [`write_overlay_png`]: per case, one PNG with a row per organ found: axial, coronal and
//!   sagittal slices through it, organ outlines in colour on the CT in grey, in radiological
//!   convention and true proportions whatever the scan's orientation and voxel spacing.
//! - [`write_index_html`]: a self-contained index.html for a batch: legend, a table of status,
//!   organ volumes, wall time and peak memory per case, and each case's picture.
//! - [`write_training_curves_png`]: a training run's loss and validation Dice per organ.
//!
//! Both write through a temporary file and a rename, so a report is never half-written.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod atomic;
mod curves;
mod error;
mod html;
mod overlay;
mod view;

#[cfg(test)]
mod tests;

pub use crate::{
    curves::{TrainingCurves, write_training_curves_png},
    error::{ReportError, Result},
    html::{CaseEntry, CaseStatus, write_index_html},
    overlay::{OverlayInfo, OverlayOptions, write_overlay_png},
};

pub use flare_labels::{Label, LabelSet};

/// Outline colours of FLARE21's liver (1), kidneys (2), spleen (3) and pancreas (4), from their
/// home [`flare_labels::flare21::COLOURS_RGB`]; pictures take each label's colour from the
/// [`LabelSet`] they are given.
pub const ORGAN_COLOURS: [[u8; 3]; 4] = flare_labels::flare21::COLOURS_RGB;

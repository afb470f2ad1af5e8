//! Errors of the metric computations and of folder evaluation.

use std::path::PathBuf;

/// Why a score could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Prediction and ground truth hold different numbers of voxels, or neither matches the shape.
    #[error(
        "{what}: shape {shape:?} needs {expected} voxels but the ground truth has {gt} and the prediction {pred}"
    )]
    DataLength {
        /// What was being scored.
        what: String,
        /// The grid's shape.
        shape: [usize; 3],
        /// Voxels the shape needs.
        expected: usize,
        /// Voxels in the ground truth.
        gt: usize,
        /// Voxels in the prediction.
        pred: usize,
    },
    /// A mask whose voxel count does not match its shape.
    #[error("mask of shape {shape:?} needs {expected} voxels but holds {actual}")]
    MaskLength {
        /// The shape.
        shape: [usize; 3],
        /// Voxels the shape needs.
        expected: usize,
        /// Voxels given.
        actual: usize,
    },
    /// A spacing that is zero, negative or not finite.
    #[error("{what}: voxel spacing {spacing_mm:?} mm is not positive and finite")]
    BadSpacing {
        /// What was being scored.
        what: String,
        /// The offending spacing.
        spacing_mm: [f64; 3],
    },
    /// A tolerance that is negative or not finite, or a tolerance list that does not parse.
    #[error("bad NSD tolerance {text:?}: {reason}")]
    BadTolerance {
        /// The text or value given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label set with more organs than the scorer counts at once.
    #[error("{organs} organs to score; at most {max} are scored at once")]
    TooManyOrgans {
        /// Organs in the label set.
        organs: usize,
        /// The most [`crate::MAX_ORGANS`].
        max: usize,
    },
    /// The bounding boxes to score need more memory than is available.
    #[error("{what}: the organs' bounding boxes ({voxels} voxels in all) {source}")]
    OutOfMemory {
        /// What was being scored.
        what: String,
        /// Voxels in the padded crops scored at once.
        voxels: u64,
        /// How much was needed and available.
        #[source]
        source: flare_volume::memory::InsufficientMemory,
    },
    /// A ground-truth folder without any `.nii.gz` or `.nii` file.
    #[error("{}: no ground-truth files (*.nii.gz or *.nii) in this folder", dir.display())]
    NoCases {
        /// The folder.
        dir: PathBuf,
    },
    /// No prediction file has the name of any ground-truth file.
    #[error(
        "{}: no prediction matches a ground-truth name (expected e.g. {expected:?}, found {found:?}); \
         a prediction must be named like its ground truth, i.e. the input's name without `_0000`",
        pred_dir.display()
    )]
    NoMatchingPredictions {
        /// The prediction folder.
        pred_dir: PathBuf,
        /// A few ground-truth names.
        expected: Vec<String>,
        /// A few names found in the prediction folder.
        found: Vec<String>,
    },
    /// A folder or file that could not be read or listed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

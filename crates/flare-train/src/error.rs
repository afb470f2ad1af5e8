//! The crate's error type: every variant names the file, folder or case it is about.

use std::{fmt, path::PathBuf};

/// One problem found while checking a dataset, about one case (or one unpaired file).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The case name (`btcv_0005`), or the file name for a file that has no case.
    pub case: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong with one case of a dataset.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// An image with no label file of the same case name.
    MissingLabel {
        /// The image file.
        image: PathBuf,
    },
    /// A label file with no image of the same case name.
    MissingImage {
        /// The label file.
        label: PathBuf,
    },
    /// A file cannot be read or decoded.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
    /// Image and label map lie on different grids.
    GridMismatch {
        /// Image shape.
        image_shape: [usize; 3],
        /// Label shape.
        label_shape: [usize; 3],
        /// Largest difference between the two affines, entry by entry (mm).
        affine_diff_mm: f64,
    },
    /// Label values outside 0..=4.
    BadLabels {
        /// The label file.
        label: PathBuf,
        /// The offending values, ascending.
        values: Vec<u8>,
    },
    /// A case listed in `dataset.json` whose file does not exist.
    Listed {
        /// The missing file.
        path: PathBuf,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.case)?;
        match &self.kind {
            ProblemKind::MissingLabel { image } => {
                write!(f, "image {} has no label file", image.display())
            }
            ProblemKind::MissingImage { label } => {
                write!(f, "label file {} has no image", label.display())
            }
            ProblemKind::Unreadable { path, message } => {
                write!(f, "cannot read {}: {message}", path.display())
            }
            ProblemKind::GridMismatch {
                image_shape,
                label_shape,
                affine_diff_mm,
            } => write!(
                f,
                "image and label are on different grids (shapes {image_shape:?} and \
                 {label_shape:?}, affines differ by up to {affine_diff_mm:.4} mm)"
            ),
            ProblemKind::BadLabels { label, values } => write!(
                f,
                "label values {values:?} outside 0..=4 (0 background, 1 liver, 2 kidney, \
                 3 spleen, 4 pancreas) in {}",
                label.display()
            ),
            ProblemKind::Listed { path } => {
                write!(
                    f,
                    "dataset.json lists {}, which does not exist",
                    path.display()
                )
            }
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A folder or file cannot be listed, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A dataset folder holds no NIfTI files at all.
    #[error(
        "{dir}: no .nii or .nii.gz files found (expected <case>_0000.nii.gz images and <case>.nii.gz labels, or imagesTr/ and labelsTr/)"
    )]
    EmptyDataset {
        /// The folder.
        dir: PathBuf,
    },
    /// A dataset folder holds NIfTI files but not one image/label pair.
    #[error("{dir}: no image/label pairs found ({n_files} NIfTI files, none paired):\n{}", lines(.problems))]
    NoPairs {
        /// The folder.
        dir: PathBuf,
        /// How many NIfTI files were seen.
        n_files: usize,
        /// The unpaired files.
        problems: Vec<Problem>,
    },
    /// The dataset has bad cases; all of them are listed, one per line.
    #[error("{dir}: {} problem(s) in the dataset:\n{}", .problems.len(), lines(.problems))]
    InvalidDataset {
        /// The dataset folder.
        dir: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// `dataset.json` cannot be parsed or is inconsistent.
    #[error("{path}: {message}")]
    DatasetJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A train/validation split cannot be made as asked.
    #[error("cannot split the dataset: {0}")]
    Split(String),
    /// A configuration value is out of range.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The cache folder holds something unexpected (a truncated or foreign file).
    #[error("cache {path}: {message}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading a NIfTI file failed.
    #[error(transparent)]
    Nifti(#[from] flare_nifti::NiftiError),
    /// Writing the curves' picture failed.
    #[error(transparent)]
    Report(#[from] flare_report::ReportError),
    /// The engine refused a tensor (a batch that does not fit its shape).
    #[error(transparent)]
    Engine(#[from] flare_engine::EngineError),
    /// The run state, a configuration or a checkpoint could not be serialised.
    #[error("cannot serialise {what}: {detail}")]
    Serialise {
        /// What was being serialised.
        what: &'static str,
        /// The serialiser's reason.
        detail: String,
    },
    /// Predicting a validation case failed in the pipeline (other than in the network,
    /// resampling or geometry, which keep their own variants).
    #[error("inference: {0}")]
    Inference(flare_pipeline::PipelineError),
    /// The thread preparing batches stopped without an error of its own.
    #[error("the sampler thread stopped")]
    SamplerStopped,
    /// Resampling failed.
    #[error(transparent)]
    Imgproc(#[from] flare_imgproc::ImgprocError),
    /// A grid could not be built.
    #[error(transparent)]
    Geometry(#[from] flare_volume::GeometryError),
    /// The network failed (forward, loss, backward, model file).
    #[error(transparent)]
    Model(#[from] flare_model::ModelError),
    /// Scoring a validation case failed.
    #[error(transparent)]
    Metrics(#[from] flare_metrics::MetricsError),
    /// A checkpoint file is unreadable, truncated, or does not fit this run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The loss became NaN or infinite: training cannot continue from here.
    #[error("the loss is not finite at step {step} ({loss}); lower the learning rate")]
    Diverged {
        /// The step.
        step: u64,
        /// The loss value.
        loss: f64,
    },
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Short alias used throughout the crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}

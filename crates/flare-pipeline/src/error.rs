//! Errors of the inference pipeline: model files that do not hold a usable two-stage model,
//! and failures of the steps (resampling, the network, geometry).

use std::path::PathBuf;

/// Why a model could not be loaded or saved, or a scan not segmented.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The file is a model of one stage, as `flare train` writes it.
    #[error(
        "{}: this is a single-stage model; bundle stage 1 and 2 with `flare bundle`",
        path.display()
    )]
    SingleStage {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a flare two-stage model (not safetensors, or no pipeline metadata).
    #[error("{}: not a flare two-stage model: {detail}", path.display())]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The pipeline plan (metadata `flare.pipeline`) is missing, unreadable or out of range.
    #[error("{}: bad pipeline plan: {detail}", path.display())]
    BadPlan {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A tensor that belongs to neither stage.
    #[error("{}: unexpected tensor `{name}` (not a tensor of any stage the file's plan names)", path.display())]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A stage's network or card cannot be used by the pipeline (wrong channels, classes,
    /// grid type, normalisation).
    #[error("{}: stage {stage}: {detail}", path.display())]
    Unusable {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// 1 or 2.
        stage: u8,
        /// What is wrong.
        detail: String,
    },
    /// A model-file or network error (names its file and tensor).
    #[error(transparent)]
    Model(#[from] flare_model::ModelError),
    /// A resampling or post-processing error.
    #[error(transparent)]
    Imgproc(#[from] flare_imgproc::ImgprocError),
    /// A grid that cannot be built.
    #[error(transparent)]
    Geometry(#[from] flare_volume::GeometryError),
    /// The engine refused a tensor.
    #[error(transparent)]
    Engine(#[from] flare_engine::EngineError),
}

/// The pipeline's result type.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

//! Errors of the report writers; every one names the file or folder it concerns.

use std::path::PathBuf;

/// What went wrong while writing a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A file or folder could not be created, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The PNG encoder refused the picture.
    #[error("{path}: PNG encoding failed: {source}")]
    Png {
        /// The picture being written.
        path: PathBuf,
        /// The encoder's reason.
        source: png::EncodingError,
    },
    /// The CT and the label map do not lie on the same voxel grid.
    #[error("{path}: CT and label map lie on different grids: {detail}")]
    GridMismatch {
        /// The picture that was asked for.
        path: PathBuf,
        /// Shapes or affines of both.
        detail: String,
    },
    /// An option is out of its range.
    #[error("{path}: bad overlay options: {detail}")]
    BadOptions {
        /// The picture that was asked for.
        path: PathBuf,
        /// Which option and why.
        detail: String,
    },
}

/// Result of the report writers.
pub type Result<T> = std::result::Result<T, ReportError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReportError {
    let path = path.into();
    move |source| ReportError::Io { path, source }
}

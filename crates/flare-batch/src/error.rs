//! Errors of the batch bookkeeping; each names the variable, file or folder it concerns.

use std::path::PathBuf;

/// What went wrong while choosing a part or reading and writing records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A part index or count out of range.
    #[error("part {index} of {count} does not exist: {detail}")]
    BadPart {
        /// The index asked for.
        index: u64,
        /// The number of parts.
        count: u64,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// The cluster engine's variable is not set.
    #[error("{var} is not set: {hint}")]
    MissingEnv {
        /// The environment variable.
        var: &'static str,
        /// Where it comes from.
        hint: String,
    },
    /// The cluster engine's variable is not what it should be.
    #[error("{var}={value:?}: {detail}")]
    BadEnv {
        /// The environment variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// A file or folder could not be read, created, written or renamed.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A record file is not a record.
    #[error("{path}: not a flare case record: {detail}")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// The parser's reason.
        detail: String,
    },
}

/// Result of the batch bookkeeping.
pub type Result<T> = std::result::Result<T, BatchError>;

pub(crate) fn io_err(
    path: impl Into<PathBuf>,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> BatchError {
    let path = path.into();
    move |source| BatchError::Io {
        path,
        action,
        source,
    }
}

//! Errors of the resource monitor.

/// Why a command could not be measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// No command was given.
    #[error("no command to measure")]
    NoCommand,
    /// The sampling interval is below 1 ms or not a finite number of seconds.
    #[error("sampling interval {0} s must be a number of seconds, at least 0.001")]
    BadInterval(f64),
    /// The command could not be started (not found, not executable).
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for {command:?}: {source}")]
    Wait {
        /// The program.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

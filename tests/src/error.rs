//! The one error type of the harness.
//!
//! Tests usually `unwrap()` these: the `Display` text is written so that the
//! panic message alone says what went wrong and where to look (log paths).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An OS call (spawn, file, socket) failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `cargo build` of the chorus binaries failed or did not produce them.
    #[error("building the chorus binaries failed: {0}")]
    Build(String),
    /// Binaries the harness was told to use as built are not there.
    #[error("{0}")]
    Missing(String),
    /// A process ended while the harness still needed it.
    #[error("{label} exited early with {status}; log: {}", log.display())]
    Exited {
        /// The process label.
        label: String,
        /// How it ended.
        status: ExitStatus,
        /// Its stderr log.
        log: PathBuf,
    },
    /// A condition was not reached in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        after: Duration,
    },
    /// A command ran but did not do what the harness expected.
    #[error("{0}")]
    Unexpected(String),
}

impl HarnessError {
    /// Wraps an `io::Error` with a description of the failed step.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Result alias for the harness.
pub type Result<T> = std::result::Result<T, HarnessError>;

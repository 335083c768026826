//! The crate-wide error type gathering each module's errors.

use crate::{
    config::error::ConfigError, engine::source::EngineError, history::pool::HistoryError,
    queue::QueueError, restore::error::RestoreError, storage::error::StorageError,
};

/// Result alias for backup-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any failure of backup-core, by the module it came from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid or could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A backup source (database or media tree) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Storage could not be opened, written, read or listed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The run history database failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The Redis queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A restore or verification could not go on.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// An unexpected local I/O failure (compression, temporary files).
    #[error("{context}: {}", io_chain(source))]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying the same operation cannot help (bad credentials,
    /// missing tool, missing target, invalid configuration).
    ///
    /// The worker uses this to abort a job instead of spending retries on it.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Config(_) | Error::Restore(_) => true,
            Error::Engine(e) => e.is_permanent(),
            Error::Storage(e) => e.is_permanent(),
            Error::History(_) | Error::Queue(_) | Error::Io { .. } => false,
        }
    }
}

/// An I/O error and its causes on one line: libraries wrap the OS error
/// ("No space left on device") in messages of their own.
pub(crate) fn io_chain(e: &std::io::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

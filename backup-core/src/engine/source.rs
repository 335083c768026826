//! What an engine hands the pipeline: a [`Source`] (its description and a
//! producer that streams the bytes), and the [`EngineError`]s of sources.

use std::io::{self, Write};

/// Source failures. Each message is one line: what failed, why, what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A dump tool is not installed (or not where configured).
    #[error("{tool} not found{where_}; {hint}")]
    ToolMissing {
        /// Tool name or path.
        tool: String,
        /// Where it was looked for.
        where_: String,
        /// How to fix it.
        hint: String,
    },
    /// The dump tool is older than the server: its dump could be incomplete.
    #[error("{tool} {tool_version} is older than server {server_version}; {hint}")]
    ToolTooOld {
        /// Tool name.
        tool: String,
        /// Tool version.
        tool_version: String,
        /// Server version.
        server_version: String,
        /// How to fix it.
        hint: String,
    },
    /// The database server refused or could not be reached.
    #[error("cannot connect to {engine} database {database} at {address}: {cause}")]
    Connect {
        /// Engine name.
        engine: &'static str,
        /// Database name.
        database: String,
        /// `host:port`.
        address: String,
        /// The driver's reason (redacted).
        cause: String,
        /// Whether retrying cannot help (bad credentials, no such database).
        permanent: bool,
    },
    /// The thing to back up does not exist or is not usable.
    #[error("{0}")]
    TargetMissing(String),
    /// The dump tool exited unsuccessfully.
    #[error("{tool} {status}{}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    ToolFailed {
        /// Tool name.
        tool: String,
        /// How it ended ("exited with status 1", "was killed by signal 9 (SIGKILL)").
        status: String,
        /// The relevant part of its stderr (redacted).
        stderr: String,
    },
    /// Reading the source failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The backup stream could not be written onward (compression or storage).
    #[error("writing the backup stream failed: {0}")]
    Output(#[source] io::Error),
}

impl EngineError {
    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            EngineError::ToolMissing { .. }
            | EngineError::ToolTooOld { .. }
            | EngineError::TargetMissing(_) => true,
            EngineError::Connect { permanent, .. } => *permanent,
            EngineError::ToolFailed { .. } | EngineError::Io { .. } | EngineError::Output(_) => {
                false
            }
        }
    }

    /// A missing tool's error with `hint` as what to do (known only once
    /// the server has answered); any other error as it is.
    #[must_use]
    pub(crate) fn with_hint(self, hint: &str) -> Self {
        match self {
            EngineError::ToolMissing { tool, where_, .. } => EngineError::ToolMissing {
                tool,
                where_,
                hint: hint.to_string(),
            },
            other => other,
        }
    }
}

/// What a finished source reports.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    /// Files archived (media).
    pub files: Option<u64>,
    /// Things worth telling the operator that did not fail the run.
    pub warnings: Vec<String>,
}

/// A source ready to stream: its description and its producer.
pub struct Source {
    /// `postgresql`, `mysql`, `sqlite` or `media`.
    pub engine: &'static str,
    /// What the decompressed artifact is, e.g. `pg_dump custom archive`.
    pub format: &'static str,
    /// File extension of that format, e.g. `dump`.
    pub extension: &'static str,
    /// Server version, when there is one.
    pub server_version: Option<String>,
    /// Tool version, when a tool runs.
    pub tool_version: Option<String>,
    /// Streams the bytes; runs on a blocking thread.
    pub producer: Producer<SourceStats>,
}

/// Writes the whole source into the writer it is given. Runs on a blocking
/// thread; returns what the source wants to report (file counts, warnings).
pub type Producer<T> = Box<dyn FnOnce(&mut dyn Write) -> Result<T, EngineError> + Send>;

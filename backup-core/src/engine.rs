//! Backup sources: one module per engine, each preparing a [`Source`] whose
//! producer streams the backup's bytes.

pub mod media;
pub mod mysql;
pub mod postgres;
pub mod process;
pub mod sqlite;

use std::{future::Future, io, path::PathBuf, time::Duration};

use secrecy::ExposeSecret;

use crate::{
    config::{DatabaseSource, DatabaseTarget, ServerDatabase, ToolSettings},
    pipeline::Producer,
    redact,
};

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

/// Checks a database target (reachable, credentials, tools, versions) and
/// returns its source.
///
/// # Errors
///
/// An [`EngineError`] saying what is wrong and what to do.
pub async fn prepare_database(
    target: &DatabaseTarget,
    tools: &ToolSettings,
) -> Result<Source, EngineError> {
    match &target.source {
        DatabaseSource::Postgres(db) => postgres::prepare(db, tools).await,
        DatabaseSource::Mysql(db) => mysql::prepare(db, tools).await,
        DatabaseSource::Sqlite { path } => sqlite::prepare(path).await,
    }
}

/// Reaching a database server before dumping it, so that a bad password, a
/// missing database or a dead host fails at once with the driver's reason.
pub(crate) struct Preflight<'a> {
    /// Engine name for messages.
    pub engine: &'static str,
    /// The database.
    pub db: &'a ServerDatabase,
    /// The engine's default port, for messages.
    pub default_port: u16,
    /// The driver error as one line, and whether retrying cannot help.
    pub describe: fn(&sqlx::Error) -> (String, bool),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

impl Preflight<'_> {
    /// Awaits `connecting`, giving up after a timeout.
    pub(crate) async fn connect<C>(
        &self,
        connecting: impl Future<Output = Result<C, sqlx::Error>>,
    ) -> Result<C, EngineError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => Err(self.error(
                format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                false,
            )),
            Ok(result) => result.map_err(|e| self.failed(&e)),
        }
    }

    /// A driver error as an [`EngineError::Connect`], password masked.
    pub(crate) fn failed(&self, e: &sqlx::Error) -> EngineError {
        let (cause, permanent) = (self.describe)(e);
        self.error(cause, permanent)
    }

    fn error(&self, cause: String, permanent: bool) -> EngineError {
        let secret = self
            .db
            .password
            .as_ref()
            .map(|p| p.expose_secret())
            .unwrap_or_default();
        EngineError::Connect {
            engine: self.engine,
            database: self.db.database.clone(),
            address: self.db.address(self.default_port),
            cause: redact::text(&cause, &[secret]),
            permanent,
        }
    }
}

/// A driver error as one line, for errors no engine classifies: transient.
pub(crate) fn describe_driver_error(e: &sqlx::Error) -> (String, bool) {
    match e {
        sqlx::Error::Database(db) => (db.message().to_string(), false),
        sqlx::Error::Io(io) => (
            format!("{io}; check the host and port and that the server is running"),
            false,
        ),
        sqlx::Error::Tls(tls) => (format!("TLS failed: {tls}"), false),
        other => (other.to_string(), false),
    }
}

/// A drill's scratch database that already exists: never used, never dropped.
pub(crate) fn scratch_exists(name: &str) -> EngineError {
    EngineError::TargetMissing(format!(
        "scratch database {name} already exists; name one that does not (the drill creates and \
         drops its own)"
    ))
}

/// Runs `tool --version` and returns its first line.
///
/// # Errors
///
/// [`EngineError::ToolMissing`] when the tool cannot be run.
pub(crate) async fn tool_version(tool: &PathBuf, hint: &str) -> Result<String, EngineError> {
    let missing = || EngineError::ToolMissing {
        tool: tool.display().to_string(),
        where_: if tool.components().count() > 1 {
            String::new()
        } else {
            " on PATH".into()
        },
        hint: hint.to_string(),
    };
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => missing(),
            _ => EngineError::Io {
                context: format!("running {} --version", tool.display()),
                source: e,
            },
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next() {
        Some(line) if out.status.success() => Ok(line.trim().to_string()),
        _ => Err(missing()),
    }
}

/// The first `major.minor` version number in a tool's `--version` line.
pub(crate) fn version_number(line: &str) -> Option<(u32, u32)> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|token| {
            let mut parts = token.split('.').filter(|p| !p.is_empty());
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
            Some((major, minor))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_from_tool_banners() {
        assert_eq!(
            version_number("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some((15, 20))
        );
        assert_eq!(
            version_number("pg_dump (PostgreSQL) 17beta1"),
            Some((17, 0))
        );
        assert_eq!(version_number("no digits"), None);
    }
}

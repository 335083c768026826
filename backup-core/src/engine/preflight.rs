//! Reaching a database server before dumping or restoring it, so that a bad
//! password, a missing database or a dead host fails at once with the
//! driver's reason.

use std::{future::Future, time::Duration};

use secrecy::ExposeSecret;

use super::source::EngineError;
use crate::{config::ServerDatabase, redact};

/// How to reach one database server and describe its failures.
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

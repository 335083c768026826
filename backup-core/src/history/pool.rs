//! The handle on the history database: a pool on SQLite or PostgreSQL, the
//! [`on_pool`] macro that runs one query on whichever is open, and the
//! errors of history.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::{PgPool, SqlitePool};

use crate::redact;

/// History database failures.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database could not be opened.
    #[error("cannot open run history {url}: {source}")]
    Open {
        /// History URL (redacted).
        url: String,
        /// Driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("cannot migrate run history {url}: {source}")]
    Migrate {
        /// History URL (redacted).
        url: String,
        /// Migration error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("run history query failed ({what}): {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Driver error.
        #[source]
        source: sqlx::Error,
    },
    /// There is no history database yet.
    #[error("no run history at {0} yet; the first backup (or `backup-cli migrate`) creates it")]
    Missing(String),
    /// The database's schema is older than this program's.
    #[error(
        "run history {url} has {applied} of this program's {known} migrations; run \
         `backup-cli migrate` (reading never changes it)"
    )]
    Outdated {
        /// History URL (redacted).
        url: String,
        /// Migrations applied to it.
        applied: usize,
        /// Migrations this program knows.
        known: usize,
    },
    /// No run has this id.
    #[error("no backup run with id {0}; see `backup-cli runs list`")]
    NotFound(i64),
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same expression with `$pool` bound to whichever backend is open.
macro_rules! on_pool {
    ($history:expr, $pool:ident => $body:expr) => {
        match &$history.pool {
            $crate::history::pool::Pool::Sqlite($pool) => $body,
            $crate::history::pool::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The run history.
#[derive(Debug, Clone)]
pub struct History {
    pub(super) pool: Pool,
    pub(super) url: String,
    /// The SQLite file, for the lock files beside it.
    pub(super) sqlite_path: Option<std::path::PathBuf>,
}

/// Timestamps are kept to the microsecond, PostgreSQL's precision, so a row
/// reads back equal on both backends.
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// A driver error with the URL's password masked.
pub(super) fn redact_sqlx(e: sqlx::Error, url: &str) -> sqlx::Error {
    let password = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string));
    match password {
        Some(pw) if e.to_string().contains(&pw) => {
            sqlx::Error::Configuration(redact::text(&e.to_string(), &[&pw]).into())
        }
        _ => e,
    }
}

//! Backup sources, one module per engine: each prepares a [`Source`] whose
//! producer streams the backup's bytes, and restores what it dumped. This
//! file picks the engine of a [`DatabaseSource`].

pub mod media;
pub mod mysql;
pub mod postgres;
pub(crate) mod preflight;
pub mod process;
pub mod source;
pub mod sqlite;
pub(crate) mod tool;

pub use self::source::{EngineError, Producer, Source, SourceStats};
use crate::config::{DatabaseSource, DatabaseTarget, ToolSettings};

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

/// How many tables the database holds now.
///
/// # Errors
///
/// When it cannot be reached or read.
pub async fn tables(database: &DatabaseSource) -> Result<u64, EngineError> {
    match database {
        DatabaseSource::Postgres(db) => postgres::tables(db).await,
        DatabaseSource::Mysql(db) => mysql::tables(db).await,
        DatabaseSource::Sqlite { path } => sqlite::tables(path).await,
    }
}

/// Rows per table, by table name.
///
/// # Errors
///
/// When the database cannot be reached or read.
pub async fn row_counts(database: &DatabaseSource) -> Result<Vec<(String, u64)>, EngineError> {
    match database {
        DatabaseSource::Postgres(db) => postgres::row_counts(db).await,
        DatabaseSource::Mysql(db) => mysql::row_counts(db).await,
        DatabaseSource::Sqlite { path } => sqlite::row_counts(path).await,
    }
}

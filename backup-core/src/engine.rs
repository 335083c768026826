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

/// Whether the database exists (a SQLite file that is missing is created by
/// the restore, so it counts as there).
///
/// # Errors
///
/// When its server cannot be reached or refuses the login.
pub async fn database_exists(database: &DatabaseSource) -> Result<bool, EngineError> {
    match database {
        DatabaseSource::Postgres(db) => postgres::database_exists(db).await,
        DatabaseSource::Mysql(db) => mysql::database_exists(db).await,
        DatabaseSource::Sqlite { .. } => Ok(true),
    }
}

/// Creates the (server) database, which must not exist.
///
/// # Errors
///
/// When it exists, or cannot be created.
pub async fn create_database(database: &DatabaseSource) -> Result<(), EngineError> {
    match database {
        DatabaseSource::Postgres(db) => postgres::create_database(db).await,
        DatabaseSource::Mysql(db) => mysql::create_database(db).await,
        DatabaseSource::Sqlite { .. } => Ok(()),
    }
}

/// Drops the (server) database.
///
/// # Errors
///
/// When it cannot be dropped.
pub async fn drop_database(database: &DatabaseSource) -> Result<(), EngineError> {
    match database {
        DatabaseSource::Postgres(db) => postgres::drop_database(db).await,
        DatabaseSource::Mysql(db) => mysql::drop_database(db).await,
        DatabaseSource::Sqlite { .. } => Ok(()),
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

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use tracing_subscriber::{Layer, layer::SubscriberExt};

    use super::*;

    /// Counts warnings from sqlx.
    struct SqlxWarnings(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for SqlxWarnings {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let meta = event.metadata();
            if *meta.level() <= tracing::Level::WARN && meta.target().starts_with("sqlx") {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn server(url: &str) -> crate::config::ServerDatabase {
        match DatabaseSource::parse(url).expect("url") {
            DatabaseSource::Postgres(db) | DatabaseSource::Mysql(db) => db,
            DatabaseSource::Sqlite { .. } => unreachable!("a server URL"),
        }
    }

    /// A drill's DROP DATABASE printed sqlx's "slow statement" warning to
    /// the operator: our own statements' duration is not news.
    #[tokio::test]
    async fn slow_statements_of_ours_are_not_warnings() {
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(SqlxWarnings(warnings.clone()));
        let _default = tracing::subscriber::set_default(subscriber);

        let pg = server("postgres://postgres@127.0.0.1:5432/postgres");
        let (mut conn, _) = postgres::connect(&pg)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (.ci/setup starts it)");
        sqlx::query("SELECT pg_sleep(1.1)")
            .execute(&mut conn)
            .await
            .expect("sleep");
        let my = server("mysql://root@127.0.0.1:3306/mysql");
        let (mut conn, _) = mysql::connect(&my)
            .await
            .expect("MariaDB on 127.0.0.1:3306 (.ci/setup starts it)");
        sqlx::query("SELECT SLEEP(1.1)")
            .execute(&mut conn)
            .await
            .expect("sleep");
        assert_eq!(warnings.load(Ordering::Relaxed), 0);
    }
}

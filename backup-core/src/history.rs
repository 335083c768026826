//! Run history: the BackupRun rows, in SQLite or PostgreSQL.
//!
//! The same SQL runs on both backends (sqlx binds `$N` on SQLite too); the
//! `on_pool` macro (in `pool`) expands each query once per backend.

pub mod audit;
pub mod locks;
pub(crate) mod pool;
pub mod restores;
pub mod runs;
pub mod schedules;
pub mod when;

use std::{str::FromStr, time::Duration};

use secrecy::ExposeSecret;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

pub use self::{
    audit::AuditEntry,
    locks::InstanceLock,
    pool::{History, HistoryError, truncate},
    restores::{NewRestore, RestoreRun},
    runs::{BackupRun, Cursor, NewRun, Outcome, RunCount, RunFilter},
};
use self::{
    locks::{migration_lock, migration_read_lock},
    pool::{Pool, on_pool, redact_sqlx},
};
use crate::config::HistoryUrl;

impl History {
    /// Opens the history database (creating a SQLite file if missing) and
    /// brings its schema up to date. Safe to call from several processes.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached or migrated.
    pub async fn open(url: &HistoryUrl) -> Result<Self, HistoryError> {
        // On SQLite, connecting (which may switch a new file to WAL) races
        // another process's migration as much as migrating does: hold the
        // migration lock over both.
        let _guard = match url {
            HistoryUrl::Sqlite(path) => {
                Some(migration_lock(path, &String::from(url.clone())).await?)
            }
            HistoryUrl::Postgres(_) => None,
        };
        let history = Self::connect(url).await?;
        history.migrate_unlocked().await?;
        Ok(history)
    }

    /// Opens the history database only if it exists and has a schema,
    /// without creating, migrating or writing anything: for dry runs.
    /// `None` when there is no database yet.
    ///
    /// # Errors
    ///
    /// When an existing database cannot be reached.
    pub async fn open_existing(url: &HistoryUrl) -> Result<Option<Self>, HistoryError> {
        if let HistoryUrl::Sqlite(path) = url
            && !path.exists()
        {
            return Ok(None);
        }
        let history = Self::connect(url).await?;
        // Before the first migration there is no schema: nothing is stored.
        let sql = "SELECT 1 FROM _sqlx_migrations LIMIT 1";
        let migrated =
            on_pool!(history, pool => sqlx::query(sql).fetch_optional(pool).await.is_ok());
        Ok(migrated.then_some(history))
    }

    /// Connects without migrating (see [`History::migrate`]).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn connect(url: &HistoryUrl) -> Result<Self, HistoryError> {
        Self::connect_as(url, false).await
    }

    /// Opens the history database for reading only: nothing is created,
    /// migrated or written, so a user who may only read it can list runs.
    ///
    /// # Errors
    ///
    /// [`HistoryError::Missing`] when there is no database yet,
    /// [`HistoryError::Outdated`] when its schema is older than this
    /// program's (run `backup-cli migrate`), else when it cannot be reached.
    pub async fn open_read_only(url: &HistoryUrl) -> Result<Self, HistoryError> {
        if let HistoryUrl::Sqlite(path) = url
            && !path.exists()
        {
            return Err(HistoryError::Missing(String::from(url.clone())));
        }
        // A worker starting beside us may be migrating: read after it.
        let _migrating = match url {
            HistoryUrl::Sqlite(path) => migration_read_lock(path).await?,
            HistoryUrl::Postgres(_) => None,
        };
        let history = Self::connect_as(url, true).await?;
        let count = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
        let known = history.migrator().iter().count();
        // A PostgreSQL migration in progress shows part way for a moment:
        // look again before calling the schema old.
        let looks = if matches!(url, HistoryUrl::Postgres(_)) {
            10
        } else {
            1
        };
        for look in 1..=looks {
            // Before the first migration the table does not exist: zero.
            let applied: i64 =
                on_pool!(history, pool => sqlx::query_scalar(count).fetch_one(pool).await)
                    .unwrap_or(0);
            let applied = applied.max(0) as usize;
            if applied >= known {
                break;
            }
            if look == looks {
                return Err(HistoryError::Outdated {
                    url: history.url.clone(),
                    applied,
                    known,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(history)
    }

    async fn connect_as(url: &HistoryUrl, read_only: bool) -> Result<Self, HistoryError> {
        let shown = String::from(url.clone());
        let open_err = |source| HistoryError::Open {
            url: shown.clone(),
            source,
        };
        let pool = match url {
            HistoryUrl::Sqlite(path) => {
                // A small page cache per connection (SQLite's default is
                // 2 MiB, kept for the life of each pooled connection): the
                // OS caches the file anyway, and an idle worker stays small
                // after the dashboard has paged through a long history.
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(Duration::from_secs(30))
                    .pragma("cache_size", "-512");
                let options = if read_only {
                    // Not SQLITE_OPEN_READONLY: such a connection cannot run
                    // the recovery a WAL left by an exited writer may need,
                    // and then reads nothing. Read-write where the OS allows
                    // it (else SQLite opens read-only by itself), with every
                    // change refused by `query_only`; nothing is created.
                    options.pragma("query_only", "ON")
                } else {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
                    }
                    options
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                };
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect_with(options)
                        .await
                        .map_err(open_err)?,
                )
            }
            HistoryUrl::Postgres(secret) => {
                let options =
                    PgConnectOptions::from_str(secret.expose_secret()).map_err(open_err)?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(Duration::from_secs(15))
                        .connect_with(options)
                        .await
                        .map_err(|e| open_err(redact_sqlx(e, secret.expose_secret())))?,
                )
            }
        };
        let sqlite_path = match url {
            HistoryUrl::Sqlite(path) => Some(path.clone()),
            HistoryUrl::Postgres(_) => None,
        };
        Ok(Self {
            pool,
            url: shown,
            sqlite_path,
        })
    }

    /// The history URL with secrets masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies pending migrations; returns how many were applied.
    ///
    /// # Errors
    ///
    /// When a migration fails.
    pub async fn migrate(&self) -> Result<usize, HistoryError> {
        // PostgreSQL migrations take an advisory lock; SQLite ones take none,
        // so processes starting together (worker replicas) would race: hold
        // an exclusive lock file meanwhile.
        let _guard = match &self.sqlite_path {
            Some(path) => Some(migration_lock(path, &self.url).await?),
            None => None,
        };
        self.migrate_unlocked().await
    }

    /// The migrations of this backend.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        match &self.pool {
            Pool::Sqlite(_) => sqlx::migrate!("../migrations/sqlite"),
            Pool::Postgres(_) => sqlx::migrate!("../migrations/postgres"),
        }
    }

    async fn migrate_unlocked(&self) -> Result<usize, HistoryError> {
        let migrator = self.migrator();
        let count = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
        // Before the first migration the table does not exist: that is zero.
        let before: i64 =
            on_pool!(self, pool => sqlx::query_scalar(count).fetch_one(pool).await).unwrap_or(0);
        on_pool!(self, pool => migrator.run(pool).await).map_err(|source| {
            HistoryError::Migrate {
                url: self.url.clone(),
                source,
            }
        })?;
        Ok(migrator.iter().count().saturating_sub(before as usize))
    }

    /// Whether the database answers.
    ///
    /// # Errors
    ///
    /// When it does not.
    pub async fn ping(&self) -> Result<(), HistoryError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map(|_| ())
            .map_err(|source| HistoryError::Query {
                what: "ping",
                source,
            })
    }
}

//! Run history: the BackupRun rows, in SQLite or PostgreSQL.
//!
//! The same SQL runs on both backends (sqlx binds `$N` on SQLite too); the
//! [`on_pool`] macro expands each query once per backend.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

use crate::{
    config::{HistoryUrl, Timezone},
    redact,
    schedule::{Action, CronSchedule, Plan, Schedule, StoredSchedule},
};

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
    /// No run has this id.
    #[error("no backup run with id {0}; see `backup-cli runs list`")]
    NotFound(i64),
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The name stored in history and shown to users.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        other, [$($s),+].join(", ")
                    )),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> { s.parse() }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// What a run backs up.
    BackupType { /// A database.
    Database = "database", /// A directory tree.
    Media = "media" }
);
string_enum!(
    /// Where a run is in its life.
    RunStatus { /// Started, not finished.
    Running = "running", /// Finished with a complete artifact.
    Success = "success", /// Finished without one.
    Failed = "failed" }
);
string_enum!(
    /// What a restore row records.
    RestoreKind { /// A restore asked for by an operator.
    Restore = "restore", /// A restore drill into a scratch database, dropped afterwards.
    Drill = "drill" }
);
string_enum!(
    /// Why a run happened.
    Trigger { /// By hand (`backup-cli backup`, `trigger`).
    Manual = "manual", /// At a scheduled fire time.
    Schedule = "schedule", /// For a fire time missed while no worker ran.
    CatchUp = "catch_up" }
);

/// One backup run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct BackupRun {
    /// Run id.
    pub id: i64,
    /// `database` or `media`.
    #[sqlx(try_from = "String")]
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// `running`, `success` or `failed`.
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
    /// `manual`, `schedule` or `catch_up`.
    #[sqlx(try_from = "String")]
    pub trigger: Trigger,
    /// The fire time this run is for, when scheduled.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Queue task id, when run by a worker.
    pub task_id: Option<String>,
    /// Attempt number, from 1.
    pub attempt: i64,
    /// `host:pid` of the process that ran it.
    pub worker: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time, once finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Wall time in seconds, once finished.
    pub duration_seconds: Option<f64>,
    /// Why it failed; empty on success.
    pub error_message: String,
    /// Storage key of the artifact, on success.
    pub artifact: Option<String>,
    /// Artifact size in bytes, on success.
    pub size_bytes: Option<i64>,
    /// Artifact sha256, on success.
    pub sha256: Option<String>,
    /// The mail about this run: `sent`, `failed: <reason>` or `skipped`;
    /// none while running and on retried attempts.
    pub notification: Option<String>,
    /// When its artifact was last verified (`backup-cli verify`).
    pub verified_at: Option<DateTime<Utc>>,
    /// That verification's outcome: `ok` or `failed: <reason>`.
    pub verify_result: Option<String>,
}

/// The fields of a run known when it starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// What is backed up.
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// Why.
    pub trigger: Trigger,
    /// Fire time, when scheduled.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Queue task id, when queued.
    pub task_id: Option<String>,
    /// Attempt number, from 1.
    pub attempt: i64,
    /// `host:pid`.
    pub worker: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A complete artifact was stored.
    Success {
        /// Storage key.
        artifact: String,
        /// Size in bytes.
        size_bytes: u64,
        /// sha256 hex.
        sha256: String,
    },
    /// No artifact; the one-line cause (already redacted).
    Failed {
        /// Error message.
        error: String,
    },
}

/// Filters for [`History::list`].
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this type.
    pub backup_type: Option<BackupType>,
    /// Only runs of this target.
    pub target: Option<String>,
    /// Only runs started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs whose error message contains this text (case-insensitive).
    pub search: Option<String>,
    /// At most this many, newest first.
    pub limit: i64,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same expression with `$pool` bound to whichever backend is open.
macro_rules! on_pool {
    ($history:expr, $pool:ident => $body:expr) => {
        match &$history.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// The run history.
#[derive(Debug, Clone)]
pub struct History {
    pool: Pool,
    url: String,
    /// The SQLite file, for the lock files beside it.
    sqlite_path: Option<std::path::PathBuf>,
}

/// Timestamps are kept to the microsecond, PostgreSQL's precision, so a row
/// reads back equal on both backends.
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// Every column of `backup_runs`, as one literal (sqlx only takes static
/// SQL without an audit wrapper).
macro_rules! run_columns {
    () => {
        concat!(
            "id, backup_type, target, status, \"trigger\", scheduled_for, task_id, attempt, ",
            "worker, started_at, completed_at, duration_seconds, error_message, artifact, ",
            "size_bytes, sha256, notification, verified_at, verify_result"
        )
    };
}

/// `SELECT <every column> FROM backup_runs` followed by the given clause.
macro_rules! select_run {
    ($rest:literal) => {
        concat!("SELECT ", run_columns!(), " FROM backup_runs ", $rest)
    };
}

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

    /// Connects without migrating (see [`History::migrate`]).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn connect(url: &HistoryUrl) -> Result<Self, HistoryError> {
        let shown = String::from(url.clone());
        let open_err = |source| HistoryError::Open {
            url: shown.clone(),
            source,
        };
        let pool = match url {
            HistoryUrl::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30));
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

    async fn migrate_unlocked(&self) -> Result<usize, HistoryError> {
        let migrator = match &self.pool {
            Pool::Sqlite(_) => sqlx::migrate!("../migrations/sqlite"),
            Pool::Postgres(_) => sqlx::migrate!("../migrations/postgres"),
        };
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

    /// Opens (creating) `<history file>.<suffix>` for locking; `None` on
    /// PostgreSQL.
    fn lock_file(&self, suffix: &str) -> Option<std::io::Result<std::fs::File>> {
        self.sqlite_path
            .as_ref()
            .map(|path| open_lock_file(path, suffix))
    }

    /// Records a run as `running` and returns it as stored, with its id.
    ///
    /// # Errors
    ///
    /// When the insert fails.
    pub async fn start(&self, run: &NewRun) -> Result<BackupRun, HistoryError> {
        let sql = concat!(
            "INSERT INTO backup_runs (backup_type, target, status, \"trigger\", scheduled_for, ",
            "task_id, attempt, worker, started_at, error_message) ",
            "VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, '') RETURNING ",
            run_columns!()
        );
        on_pool!(self, pool => sqlx::query_as(sql)
            .bind(run.backup_type.as_str())
            .bind(&run.target)
            .bind(run.trigger.as_str())
            .bind(run.scheduled_for.map(truncate))
            .bind(&run.task_id)
            .bind(run.attempt)
            .bind(&run.worker)
            .bind(truncate(run.started_at))
            .fetch_one(pool)
            .await)
        .map_err(|source| HistoryError::Query {
            what: "recording a run start",
            source,
        })
    }

    /// Finishes a running run as `success` or `failed` and returns it as
    /// stored.
    ///
    /// # Errors
    ///
    /// When the update fails, or [`HistoryError::NotFound`] when the run no
    /// longer exists or was already finished (by lost-run repair, say).
    pub async fn finish(
        &self,
        run: &BackupRun,
        completed_at: DateTime<Utc>,
        outcome: &Outcome,
    ) -> Result<BackupRun, HistoryError> {
        let completed_at = truncate(completed_at);
        let duration = (completed_at - run.started_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        let (status, error, artifact, size, sha) = match outcome {
            Outcome::Success {
                artifact,
                size_bytes,
                sha256,
            } => (
                RunStatus::Success,
                "",
                Some(artifact.as_str()),
                Some(*size_bytes as i64),
                Some(sha256.as_str()),
            ),
            Outcome::Failed { error } => (RunStatus::Failed, error.as_str(), None, None, None),
        };
        let sql = concat!(
            "UPDATE backup_runs SET status = $1, completed_at = $2, duration_seconds = $3, ",
            "error_message = $4, artifact = $5, size_bytes = $6, sha256 = $7 ",
            "WHERE id = $8 AND status = 'running' RETURNING ",
            run_columns!()
        );
        let finished: Option<BackupRun> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(status.as_str())
            .bind(completed_at)
            .bind(duration)
            .bind(error)
            .bind(artifact)
            .bind(size)
            .bind(sha)
            .bind(run.id)
            .fetch_optional(pool)
            .await)
        .map_err(|source| HistoryError::Query {
            what: "recording a run end",
            source,
        })?;
        finished.ok_or(HistoryError::NotFound(run.id))
    }

    /// One run by id.
    ///
    /// # Errors
    ///
    /// [`HistoryError::NotFound`] when there is no such run.
    pub async fn get(&self, id: i64) -> Result<BackupRun, HistoryError> {
        let sql = select_run!("WHERE id = $1");
        let row: Option<BackupRun> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(|source| HistoryError::Query {
                    what: "reading a run",
                    source,
                })?;
        row.ok_or(HistoryError::NotFound(id))
    }

    /// Runs matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<BackupRun>, HistoryError> {
        let sql = select_run!(
            "WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR backup_type = $2) \
             AND ($3 IS NULL OR target = $3) AND ($4 IS NULL OR started_at >= $4) \
             AND ($5 IS NULL OR lower(error_message) LIKE $5 ESCAPE '\\') \
             ORDER BY started_at DESC, id DESC LIMIT $6"
        );
        let pattern = filter.search.as_ref().map(|s| {
            let escaped = s
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        on_pool!(self, pool => sqlx::query_as(sql)
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.backup_type.map(BackupType::as_str))
            .bind(&filter.target)
            .bind(filter.since.map(truncate))
            .bind(&pattern)
            .bind(filter.limit)
            .fetch_all(pool)
            .await)
        .map_err(|source| HistoryError::Query {
            what: "listing runs",
            source,
        })
    }

    /// Runs that started before `cutoff`, oldest first: the plan of a
    /// history cleanup.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn started_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<BackupRun>, HistoryError> {
        let sql = select_run!("WHERE started_at < $1 ORDER BY started_at, id");
        on_pool!(self, pool => sqlx::query_as(sql).bind(truncate(cutoff)).fetch_all(pool).await)
            .map_err(|source| HistoryError::Query {
                what: "listing old runs",
                source,
            })
    }

    /// Deletes the given runs in one transaction; returns how many went.
    ///
    /// # Errors
    ///
    /// When the delete fails (then none are deleted).
    pub async fn delete(&self, ids: &[i64]) -> Result<u64, HistoryError> {
        let err = |source| HistoryError::Query {
            what: "deleting runs",
            source,
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(err)?;
            let mut deleted = 0;
            for id in ids {
                deleted += sqlx::query("DELETE FROM backup_runs WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
            }
            tx.commit().await.map_err(err)?;
            Ok(deleted)
        })
    }
}

/// One restore (or drill), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RestoreRun {
    /// Restore id.
    pub id: i64,
    /// `restore` or `drill`.
    #[sqlx(try_from = "String")]
    pub kind: RestoreKind,
    /// `database` or `media`.
    #[sqlx(try_from = "String")]
    pub backup_type: BackupType,
    /// Target name of the backup restored.
    pub target: String,
    /// The backup run whose artifact was restored.
    pub source_run_id: Option<i64>,
    /// The artifact's key.
    pub artifact: String,
    /// Where it went: a database URL (password masked) or a directory.
    pub destination: String,
    /// `running`, `success` or `failed`.
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
    /// `host:pid` of the process that ran it.
    pub worker: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time, once finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Wall time in seconds, once finished.
    pub duration_seconds: Option<f64>,
    /// Decompressed bytes restored.
    pub bytes: Option<i64>,
    /// Tables (databases) or files (media) restored.
    pub items: Option<i64>,
    /// Why it failed; empty on success.
    pub error_message: String,
}

/// The fields of a restore known when it starts.
#[derive(Debug, Clone)]
pub struct NewRestore {
    /// Restore or drill.
    pub kind: RestoreKind,
    /// Database or media.
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// The backup run restored.
    pub source_run_id: Option<i64>,
    /// The artifact's key.
    pub artifact: String,
    /// Redacted destination.
    pub destination: String,
    /// `host:pid`.
    pub worker: String,
}

/// Every column of `restore_runs`, as one literal.
macro_rules! restore_columns {
    () => {
        concat!(
            "id, kind, backup_type, target, source_run_id, artifact, destination, status, ",
            "worker, started_at, completed_at, duration_seconds, bytes, items, error_message"
        )
    };
}

impl History {
    /// Records a restore as `running`.
    ///
    /// # Errors
    ///
    /// When the insert fails.
    pub async fn start_restore(&self, restore: &NewRestore) -> Result<RestoreRun, HistoryError> {
        let sql = concat!(
            "INSERT INTO restore_runs (kind, backup_type, target, source_run_id, artifact, ",
            "destination, status, worker, started_at, error_message) ",
            "VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, '') RETURNING ",
            restore_columns!()
        );
        on_pool!(self, pool => sqlx::query_as(sql)
            .bind(restore.kind.as_str())
            .bind(restore.backup_type.as_str())
            .bind(&restore.target)
            .bind(restore.source_run_id)
            .bind(&restore.artifact)
            .bind(&restore.destination)
            .bind(&restore.worker)
            .bind(truncate(Utc::now()))
            .fetch_one(pool)
            .await)
        .map_err(|source| HistoryError::Query {
            what: "recording a restore start",
            source,
        })
    }

    /// Finishes a restore: `Ok((bytes, items))` or `Err(message)`.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn finish_restore(
        &self,
        restore: &RestoreRun,
        outcome: Result<(u64, u64), &str>,
    ) -> Result<RestoreRun, HistoryError> {
        let completed_at = truncate(Utc::now());
        let duration = (completed_at - restore.started_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        let (status, bytes, items, error) = match outcome {
            Ok((bytes, items)) => (
                RunStatus::Success,
                Some(bytes as i64),
                Some(items as i64),
                "",
            ),
            Err(e) => (RunStatus::Failed, None, None, e),
        };
        let sql = concat!(
            "UPDATE restore_runs SET status = $1, completed_at = $2, duration_seconds = $3, ",
            "bytes = $4, items = $5, error_message = $6 WHERE id = $7 RETURNING ",
            restore_columns!()
        );
        on_pool!(self, pool => sqlx::query_as(sql)
            .bind(status.as_str())
            .bind(completed_at)
            .bind(duration)
            .bind(bytes)
            .bind(items)
            .bind(error)
            .bind(restore.id)
            .fetch_one(pool)
            .await)
        .map_err(|source| HistoryError::Query {
            what: "recording a restore end",
            source,
        })
    }

    /// The newest restores first.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn restores(&self, limit: i64) -> Result<Vec<RestoreRun>, HistoryError> {
        let sql = concat!(
            "SELECT ",
            restore_columns!(),
            " FROM restore_runs ORDER BY started_at DESC, id DESC LIMIT $1"
        );
        on_pool!(self, pool => sqlx::query_as(sql).bind(limit).fetch_all(pool).await).map_err(
            |source| HistoryError::Query {
                what: "listing restores",
                source,
            },
        )
    }

    /// Records the outcome of verifying a run's artifact.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn set_verified(
        &self,
        id: i64,
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), HistoryError> {
        let sql = "UPDATE backup_runs SET verified_at = $2, verify_result = $3 WHERE id = $1";
        on_pool!(self, pool => sqlx::query(sql).bind(id).bind(truncate(at)).bind(result).execute(pool).await.map(|_| ()))
            .map(|_| ())
            .map_err(|source| HistoryError::Query {
                what: "recording a verification",
                source,
            })
    }
}

/// A `backup_schedules` row as read.
#[derive(sqlx::FromRow)]
struct ScheduleRow {
    name: String,
    backup_type: String,
    targets: String,
    cron: String,
    timezone: String,
    enabled: bool,
    last_fire_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ScheduleRow> for StoredSchedule {
    type Error = String;

    fn try_from(row: ScheduleRow) -> Result<Self, Self::Error> {
        let bad = |what: &str, e: String| {
            format!(
                "stored schedule {:?} has an invalid {what}: {e}; run `backup-cli schedules setup`",
                row.name
            )
        };
        Ok(StoredSchedule {
            schedule: Schedule {
                backup_type: row.backup_type.parse().map_err(|e| bad("backup type", e))?,
                targets: serde_json::from_str(&row.targets)
                    .map_err(|e: serde_json::Error| bad("target list", e.to_string()))?,
                cron: row
                    .cron
                    .parse::<CronSchedule>()
                    .map_err(|e| bad("cron", e.to_string()))?,
                timezone: Timezone::try_from(row.timezone.clone())
                    .map_err(|e| bad("timezone", e))?,
                enabled: row.enabled,
                name: row.name,
            },
            last_fire_at: row.last_fire_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Proof that this process is the only single-process worker on a history
/// database; released when dropped (or when the process dies).
#[derive(Debug)]
pub enum InstanceLock {
    /// An exclusive lock on `<history file>.worker.lock`.
    File(std::fs::File),
    /// A PostgreSQL session advisory lock, held by this connection.
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

/// The advisory lock key of the single-process worker ("backup01").
const INSTANCE_LOCK_KEY: i64 = 0x6261_636b_7570_3031;

impl History {
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

    /// Takes the single-process worker lock of this history database, or
    /// `None` when another process holds it.
    ///
    /// # Errors
    ///
    /// When the lock file or the database cannot be used.
    pub async fn instance_lock(&self) -> Result<Option<InstanceLock>, HistoryError> {
        let err = |source| HistoryError::Query {
            what: "taking the single-worker lock",
            source,
        };
        match &self.pool {
            Pool::Sqlite(_) => {
                let file = match self.lock_file("worker.lock") {
                    Some(Ok(file)) => file,
                    Some(Err(e)) => return Err(err(sqlx::Error::Io(e))),
                    None => return Ok(None),
                };
                match file.try_lock() {
                    Ok(()) => Ok(Some(InstanceLock::File(file))),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => Err(err(sqlx::Error::Io(e))),
                }
            }
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(err)?;
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(INSTANCE_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(err)?;
                Ok(taken.then_some(InstanceLock::Postgres(conn)))
            }
        }
    }

    /// Every stored schedule, by name.
    ///
    /// # Errors
    ///
    /// When the query fails or a row no longer parses.
    pub async fn schedules(&self) -> Result<Vec<StoredSchedule>, HistoryError> {
        let sql = "SELECT name, backup_type, targets, cron, timezone, enabled, last_fire_at, \
                   created_at, updated_at FROM backup_schedules ORDER BY name";
        let rows: Vec<ScheduleRow> =
            on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await).map_err(
                |source| HistoryError::Query {
                    what: "reading schedules",
                    source,
                },
            )?;
        rows.into_iter()
            .map(|row| {
                StoredSchedule::try_from(row).map_err(|e| HistoryError::Query {
                    what: "reading schedules",
                    source: sqlx::Error::Decode(e.into()),
                })
            })
            .collect()
    }

    /// Applies a schedule plan in one transaction, stamping `now`.
    ///
    /// # Errors
    ///
    /// When a statement fails; then nothing changes.
    pub async fn apply_schedules(
        &self,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Result<(), HistoryError> {
        let err = |source| HistoryError::Query {
            what: "writing schedules",
            source,
        };
        let now = truncate(now);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(err)?;
            for (action, s) in &plan.items {
                let targets = serde_json::to_string(&s.targets).unwrap_or_else(|_| "[]".into());
                let sql = match action {
                    Action::Unchanged => continue,
                    Action::Delete => {
                        sqlx::query("DELETE FROM backup_schedules WHERE name = $1")
                            .bind(&s.name)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                        continue;
                    }
                    Action::Create => {
                        "INSERT INTO backup_schedules (name, backup_type, targets, cron, timezone, \
                         enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
                    }
                    Action::Update => {
                        "UPDATE backup_schedules SET backup_type = $2, targets = $3, cron = $4, \
                         timezone = $5, enabled = $6, updated_at = $7 WHERE name = $1"
                    }
                };
                let query = sqlx::query(sql)
                    .bind(&s.name)
                    .bind(s.backup_type.as_str())
                    .bind(targets)
                    .bind(s.cron.as_str().to_string())
                    .bind(s.timezone.0.name())
                    .bind(s.enabled)
                    .bind(now);
                query.execute(&mut *tx).await.map_err(err)?;
            }
            tx.commit().await.map_err(err)
        })
    }

    /// Records that `fire` of schedule `name` was enqueued. Returns false
    /// when a fire at or after it was already recorded (by this or another
    /// process), which makes this a claim in single-process mode.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn advance_schedule(
        &self,
        name: &str,
        fire: DateTime<Utc>,
    ) -> Result<bool, HistoryError> {
        let sql = "UPDATE backup_schedules SET last_fire_at = $2 \
                   WHERE name = $1 AND (last_fire_at IS NULL OR last_fire_at < $2)";
        let affected = on_pool!(self, pool => sqlx::query(sql).bind(name).bind(truncate(fire)).execute(pool).await.map(|d| d.rows_affected()))
            .map_err(|source| HistoryError::Query {
                what: "recording a schedule fire",
                source,
            })?;
        Ok(affected == 1)
    }

    /// Records what became of the run's notification.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn set_notification(&self, id: i64, notification: &str) -> Result<(), HistoryError> {
        let sql = "UPDATE backup_runs SET notification = $2 WHERE id = $1";
        on_pool!(self, pool => sqlx::query(sql).bind(id).bind(notification).execute(pool).await.map(|_| ()))
            .map(|_| ())
            .map_err(|source| HistoryError::Query {
                what: "recording a run's notification",
                source,
            })
    }

    /// Marks a running run as alive at `at`.
    ///
    /// # Errors
    ///
    /// When the update fails.
    pub async fn beat(&self, id: i64, at: DateTime<Utc>) -> Result<(), HistoryError> {
        let sql = "UPDATE backup_runs SET heartbeat_at = $2 WHERE id = $1 AND status = 'running'";
        on_pool!(self, pool => sqlx::query(sql).bind(id).bind(truncate(at)).execute(pool).await.map(|_| ()))
            .map(|_| ())
            .map_err(|source| HistoryError::Query {
                what: "recording a run heartbeat",
                source,
            })
    }

    /// Every run of one queue task, oldest first: its attempts so far.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn task_runs(&self, task_id: &str) -> Result<Vec<BackupRun>, HistoryError> {
        let sql = select_run!("WHERE task_id = $1 ORDER BY id");
        on_pool!(self, pool => sqlx::query_as(sql).bind(task_id).fetch_all(pool).await).map_err(
            |source| HistoryError::Query {
                what: "reading a task's runs",
                source,
            },
        )
    }

    /// Running runs whose last sign of life (heartbeat, else start) is
    /// older than `cutoff`: their process is gone.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn lost_runs(&self, cutoff: DateTime<Utc>) -> Result<Vec<BackupRun>, HistoryError> {
        let sql = select_run!(
            "WHERE status = 'running' AND COALESCE(heartbeat_at, started_at) < $1 ORDER BY id"
        );
        on_pool!(self, pool => sqlx::query_as(sql).bind(truncate(cutoff)).fetch_all(pool).await)
            .map_err(|source| HistoryError::Query {
                what: "looking for lost runs",
                source,
            })
    }
}

/// Opens (creating) `<history file>.<suffix>`, a file to lock.
fn open_lock_file(path: &std::path::Path, suffix: &str) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".");
    lock_path.push(suffix);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
}

/// Waits for the exclusive migration lock of a SQLite history file; held
/// until the returned file is dropped.
async fn migration_lock(path: &std::path::Path, url: &str) -> Result<std::fs::File, HistoryError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = open_lock_file(&path, "migrate.lock")?;
        file.lock().map(|()| file)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|e| HistoryError::Migrate {
        url: url.to_string(),
        source: sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(e)),
    })
}

fn redact_sqlx(e: sqlx::Error, url: &str) -> sqlx::Error {
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

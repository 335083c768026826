//! Restores and restore drills: one row each, with what was restored from
//! which run, where to, and how it ended.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::pool::{History, HistoryError, on_pool, truncate};
use crate::model::{BackupType, RestoreKind, RunStatus};

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
}

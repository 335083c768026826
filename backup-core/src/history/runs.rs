//! Backup runs: one row per attempt, from `running` to `success` or
//! `failed`, with its artifact, checksum, notification and verification.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::pool::{History, HistoryError, on_pool, truncate};
use crate::model::{BackupType, RunStatus, Trigger};

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
    /// Who asked for a manual run: `cli:<user>`, `web:<user>` or
    /// `token:<name>`; none for scheduled runs and older rows.
    pub triggered_by: Option<String>,
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
    /// Who, for a manual run.
    pub triggered_by: Option<String>,
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
    /// Only runs started before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only runs whose error message contains this text (case-insensitive).
    pub search: Option<String>,
    /// Only runs older than this one (keyset pagination: the last run of
    /// the previous page).
    pub before: Option<Cursor>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// A place in the newest-first order of runs: a run's start time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The run's start time.
    pub started_at: DateTime<Utc>,
    /// The run's id (ties on the start time).
    pub id: i64,
}

impl From<&BackupRun> for Cursor {
    fn from(run: &BackupRun) -> Self {
        Self {
            started_at: run.started_at,
            id: run.id,
        }
    }
}

impl RunFilter {
    /// The `LIKE` pattern of `search`: lower case, wildcards escaped.
    fn pattern(&self) -> Option<String> {
        self.search.as_ref().map(|s| {
            let escaped = s
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        })
    }
}

/// Every column of `backup_runs`, as one literal (sqlx only takes static
/// SQL without an audit wrapper).
macro_rules! run_columns {
    () => {
        concat!(
            "id, backup_type, target, status, \"trigger\", triggered_by, scheduled_for, task_id, attempt, ",
            "worker, started_at, completed_at, duration_seconds, error_message, artifact, ",
            "size_bytes, sha256, notification, verified_at, verify_result"
        )
    };
}

/// `SELECT <every column> FROM backup_runs` followed by the given clause.
macro_rules! select_run {
    ($($rest:expr),+) => {
        concat!("SELECT ", run_columns!(), " FROM backup_runs ", $($rest),+)
    };
}

/// Counts per status stop here (shown as "1000+").
pub const COUNT_CAP: i64 = 1_000;

/// Appends ` WHERE ...` with only the conditions `filter` sets, so the
/// planner can pick the index that fits (`(status, started_at, id)`,
/// `(backup_type, target, started_at)`, `(target, status)`, the partial
/// index of rows with an error for a search). `pattern` is the search's
/// `LIKE` pattern; `status` whether to filter by the filter's status.
macro_rules! push_filters {
    ($q:ident, $filter:expr, $pattern:expr, $status:expr) => {{
        $q.push(" WHERE 1 = 1");
        if $status && let Some(s) = $filter.status {
            $q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(t) = $filter.backup_type {
            $q.push(" AND backup_type = ").push_bind(t.as_str());
        }
        if let Some(t) = &$filter.target {
            $q.push(" AND target = ").push_bind(t.clone());
        }
        if let Some(t) = $filter.since {
            $q.push(" AND started_at >= ").push_bind(truncate(t));
        }
        if let Some(t) = $filter.until {
            $q.push(" AND started_at < ").push_bind(truncate(t));
        }
        if let Some(p) = &$pattern {
            // Only rows with an error can match: the partial index
            // `backup_runs_errors` holds just those.
            $q.push(" AND error_message <> '' AND lower(error_message) LIKE ")
                .push_bind(p.clone())
                .push(" ESCAPE '\\'");
        }
    }};
}

impl History {
    /// Records a run as `running` and returns it as stored, with its id.
    ///
    /// # Errors
    ///
    /// When the insert fails.
    pub async fn start(&self, run: &NewRun) -> Result<BackupRun, HistoryError> {
        let sql = concat!(
            "INSERT INTO backup_runs (backup_type, target, status, \"trigger\", scheduled_for, ",
            "task_id, attempt, worker, started_at, error_message, triggered_by) ",
            "VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, '', $9) RETURNING ",
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
            .bind(&run.triggered_by)
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
        let pattern = filter.pattern();
        on_pool!(self, pool => {
            let mut q = sqlx::QueryBuilder::new(concat!("SELECT ", run_columns!(), " FROM backup_runs"));
            push_filters!(q, filter, pattern, true);
            if let Some(c) = filter.before {
                q.push(" AND (started_at, id) < (")
                    .push_bind(truncate(c.started_at))
                    .push(", ")
                    .push_bind(c.id)
                    .push(")");
            }
            q.push(" ORDER BY started_at DESC, id DESC LIMIT ").push_bind(filter.limit);
            q.build_query_as().fetch_all(pool).await
        })
        .map_err(|source| HistoryError::Query {
            what: "listing runs",
            source,
        })
    }

    /// How many runs match `filter` (its status, cursor and limit aside),
    /// by status: the counts beside the runs page's status filter, at a
    /// bounded cost however long the history. Each is `(status, n, more)`:
    /// with `more`, there are at least `n` (shown as "n+"). Without a
    /// search each status is counted up to [`COUNT_CAP`]; with one, the
    /// newest [`COUNT_CAP`] matches are counted (one pass over the rows
    /// with an error).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn status_counts(
        &self,
        filter: &RunFilter,
    ) -> Result<Vec<(RunStatus, i64, bool)>, HistoryError> {
        let err = |source| HistoryError::Query {
            what: "counting runs by status",
            source,
        };
        let pattern = filter.pattern();
        if pattern.is_some() {
            let rows: Vec<(String, i64)> = on_pool!(self, pool => {
                let mut q = sqlx::QueryBuilder::new("SELECT status, COUNT(*) FROM (SELECT status FROM backup_runs");
                push_filters!(q, filter, pattern, false);
                q.push(" ORDER BY started_at DESC LIMIT ").push_bind(COUNT_CAP).push(") AS newest GROUP BY status");
                q.build_query_as().fetch_all(pool).await
            })
            .map_err(err)?;
            let more = rows.iter().map(|(_, n)| n).sum::<i64>() >= COUNT_CAP;
            return Ok(RunStatus::ALL
                .iter()
                .map(|status| {
                    let n = rows
                        .iter()
                        .find(|(s, _)| s == status.as_str())
                        .map_or(0, |(_, n)| *n);
                    (*status, n, more && n > 0)
                })
                .collect());
        }
        let mut out = Vec::new();
        for status in RunStatus::ALL {
            let n: i64 = on_pool!(self, pool => {
                let mut q = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM (SELECT 1 FROM backup_runs");
                push_filters!(q, filter, pattern, false);
                q.push(" AND status = ").push_bind(status.as_str());
                q.push(" LIMIT ").push_bind(COUNT_CAP).push(") AS capped");
                q.build_query_scalar().fetch_one(pool).await
            })
            .map_err(err)?;
            out.push((*status, n, n >= COUNT_CAP));
        }
        Ok(out)
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

    /// How many finished runs each target has, by status: whichever process
    /// or replica ran them.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn run_counts(&self) -> Result<Vec<RunCount>, HistoryError> {
        let sql = "SELECT backup_type, target, status, COUNT(*) AS runs FROM backup_runs \
                   WHERE status <> 'running' GROUP BY backup_type, target, status \
                   ORDER BY backup_type, target, status";
        on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await).map_err(|source| {
            HistoryError::Query {
                what: "counting runs",
                source,
            }
        })
    }

    /// The newest successful run of each target, by type and name. One
    /// indexed look-up per target (`backup_runs_target`), so it costs the
    /// same on a history of a hundred runs or a million.
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn last_successes(&self) -> Result<Vec<BackupRun>, HistoryError> {
        let err = |source| HistoryError::Query {
            what: "reading the last successful runs",
            source,
        };
        let targets: Vec<(String, String)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT DISTINCT backup_type, target FROM backup_runs ORDER BY backup_type, target"
        )
        .fetch_all(pool)
        .await)
        .map_err(err)?;
        let mut out = Vec::new();
        for (backup_type, target) in targets {
            let Ok(backup_type) = backup_type.parse() else {
                continue;
            };
            out.extend(self.last_success(backup_type, &target).await?);
        }
        Ok(out)
    }

    /// The newest successful run of one target (an indexed look-up).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn last_success(
        &self,
        backup_type: BackupType,
        target: &str,
    ) -> Result<Option<BackupRun>, HistoryError> {
        let sql = select_run!(
            "WHERE backup_type = $1 AND target = $2 AND status = 'success' ",
            "ORDER BY started_at DESC, id DESC LIMIT 1"
        );
        on_pool!(self, pool => sqlx::query_as(sql)
            .bind(backup_type.as_str())
            .bind(target)
            .fetch_optional(pool)
            .await)
        .map_err(|source| HistoryError::Query {
            what: "reading the last successful run",
            source,
        })
    }
}

/// Finished runs of one target with one status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunCount {
    /// `database` or `media`.
    #[sqlx(try_from = "String")]
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// `success` or `failed`.
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
    /// How many.
    pub runs: i64,
}

//! Job payloads and the handlers the worker runs: a backup of one target
//! (per-target lock, idempotent on its task id, retries with backoff, lost
//! runs taken over) and the maintenance job (history cleanup, lost runs).
//!
//! The handlers are plain async functions over a [`Runner`]; the worker
//! registers them with apalis, single-process mode calls them directly.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Error,
    backup::{self, Context, Request},
    history::{BackupRun, BackupType, HistoryError, Outcome, RunStatus, Trigger},
    notify::Notice,
    pipeline::Progress,
    queue::{JobResult, Queue, QueueError, RedisLock},
};

/// A backup of one target, as queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupJob {
    /// What to back up.
    pub backup_type: BackupType,
    /// The target's name.
    pub target: String,
    /// Manual, scheduled or catch-up.
    pub trigger: Trigger,
    /// The fire time, when scheduled.
    pub scheduled_for: Option<DateTime<Utc>>,
}

impl BackupJob {
    /// The key that makes a scheduled fire enqueue once across replicas:
    /// schedule, target and fire time. Manual jobs have none.
    pub fn idempotency_key(&self, schedule: &str) -> Option<String> {
        self.scheduled_for
            .map(|at| format!("{schedule}:{}:{}", self.target, at.timestamp()))
    }
}

/// A scheduled chore: the daily maintenance, or the verification of the
/// newest artifacts (`verify_schedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceJob {
    /// Its fire time.
    pub scheduled_for: DateTime<Utc>,
    /// Which chore.
    #[serde(default)]
    pub chore: Chore,
}

/// The chores the maintenance queue runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chore {
    /// History cleanup, lost runs, partial uploads.
    #[default]
    Maintenance,
    /// Verify the newest artifact of each target, drill restores.
    Verify,
}

impl Chore {
    /// Its name, as in idempotency keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Chore::Maintenance => "maintenance",
            Chore::Verify => "verify",
        }
    }
}

/// Runs a chore job.
///
/// # Errors
///
/// When history or storage fail.
pub async fn run_chore(ctx: &Context, job: &MaintenanceJob) -> Result<(), Error> {
    match job.chore {
        Chore::Maintenance => run_maintenance(ctx, Utc::now()).await.map(|_| ()),
        Chore::Verify => run_verification(ctx).await.map(|_| ()),
    }
}

/// The scheduled verification: verifies the newest artifact of each target;
/// for a database artifact that passes, drills its restore into a scratch
/// database (`verify_scratch` for PostgreSQL and MySQL, a temporary file for
/// SQLite). Every failure is notified like a failed backup. Returns how many
/// artifacts failed.
///
/// # Errors
///
/// When storage cannot be listed or history read.
pub async fn run_verification(ctx: &Context) -> Result<usize, Error> {
    use crate::{config::DatabaseSource, restore};
    let results = match restore::verify(ctx, &restore::Scope::Latest, None).await {
        Ok(results) => results,
        Err(Error::Restore(restore::RestoreError::NotFound(why))) => {
            tracing::info!(reason = %why, "nothing to verify");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let mut failed = 0;
    for result in &results {
        let mut problem = (!result.ok).then(|| result.detail.clone());
        if problem.is_none() && result.backup_type == BackupType::Database {
            let scratch_dir = tempfile::tempdir().map_err(|e| Error::Io {
                context: "creating a scratch directory".into(),
                source: e,
            })?;
            let scratch = match result.engine.as_deref() {
                Some("sqlite") => Some(DatabaseSource::Sqlite {
                    path: scratch_dir.path().join("drill.sqlite3"),
                }),
                Some(engine) => ctx
                    .settings
                    .verify_scratch
                    .iter()
                    .find(|s| s.0.engine() == engine)
                    .map(|s| s.0.clone()),
                None => None,
            };
            if let Some(scratch) = scratch {
                let drilled = async {
                    // By key: the run may have left history (retention) while
                    // its artifact is still kept.
                    let manifest = restore::find(
                        ctx,
                        BackupType::Database,
                        Some(&result.target),
                        &restore::Pick::Artifact(result.artifact.clone()),
                    )
                    .await?;
                    restore::drill(ctx, &manifest, &scratch, Progress::default()).await
                }
                .await;
                match drilled {
                    Ok(drill) if drill.report.error.is_none() => tracing::info!(
                        target = %result.target,
                        tables = drill.tables.len(),
                        rows = drill.tables.iter().map(|(_, n)| n).sum::<u64>(),
                        "restore drill passed"
                    ),
                    Ok(drill) => {
                        problem = Some(format!(
                            "restore drill failed: {}",
                            drill.report.run.error_message
                        ));
                    }
                    Err(e) => problem = Some(format!("restore drill failed: {e}")),
                }
            }
        }
        if let Some(problem) = problem {
            failed += 1;
            let run = match result.run_id {
                Some(id) => ctx.history.get(id).await.ok(),
                None => None,
            };
            let notice =
                Notice::verification_failed(result.backup_type, &result.target, run, &problem);
            ctx.notifier.finished(&ctx.history, &notice).await;
        }
    }
    metrics::gauge!("backup_verify_failures").set(failed as f64);
    tracing::info!(verified = results.len(), failed, "verification done");
    Ok(failed)
}

/// Why a backup job ended without a successful run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JobFailed {
    /// One-line cause (redacted).
    pub message: String,
    /// The last attempt's row, when one was recorded.
    pub run: Option<BackupRun>,
}

/// Per-target locks: two backups of one target never overlap.
#[derive(Debug, Clone)]
pub enum Locks {
    /// Across processes, in Redis.
    Redis(Queue),
    /// Within this process (single-process mode).
    Local(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>),
}

/// A held target lock.
#[derive(Debug)]
pub enum Held {
    /// In Redis, renewed while held.
    Redis(RedisLock),
    /// In this process.
    Local(tokio::sync::OwnedMutexGuard<()>),
}

impl Held {
    /// Lets the next run of the target start.
    pub async fn release(self) {
        match self {
            Held::Redis(lock) => lock.release().await,
            Held::Local(guard) => drop(guard),
        }
    }
}

impl Locks {
    /// In-process locks.
    pub fn local() -> Self {
        Locks::Local(Arc::default())
    }

    /// Waits for the lock of `name`. A Redis lock left by a dead holder
    /// expires after `ttl`.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn acquire(&self, name: &str, ttl: Duration) -> Result<Held, QueueError> {
        match self {
            Locks::Local(map) => {
                let lock = {
                    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                    map.entry(name.to_string()).or_default().clone()
                };
                Ok(Held::Local(lock.lock_owned().await))
            }
            Locks::Redis(queue) => {
                let mut waited = false;
                loop {
                    if let Some(lock) = queue.try_lock(name, ttl).await? {
                        return Ok(Held::Redis(lock));
                    }
                    if !waited {
                        tracing::info!(
                            lock = name,
                            "another backup of this target is running; waiting"
                        );
                        waited = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The lock every backup of a target takes (worker jobs and `backup-cli
/// backup` alike).
pub fn lock_name(backup_type: BackupType, target: &str) -> String {
    format!("{backup_type}:{target}")
}

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Settings, storage, history.
    pub ctx: Context,
    /// Target locks.
    pub locks: Locks,
    /// Where final results go for `trigger --wait` (queue mode).
    pub results: Option<Queue>,
}

/// Runs a backup job: waits for the target's lock, skips if this task
/// already succeeded (a redelivered job), finishes the rows of a lost
/// earlier delivery, then runs attempts until one succeeds, an error is
/// permanent, or `retry.attempts` rows exist for the task.
///
/// # Errors
///
/// [`JobFailed`] when no attempt succeeded; the job is then over (the
/// worker tells apalis not to run it again).
pub async fn run_backup(
    runner: &Runner,
    job: &BackupJob,
    task_id: &str,
) -> Result<BackupRun, JobFailed> {
    let outcome = attempts(runner, job, task_id).await;
    notify(&runner.ctx, job, &outcome).await;
    if let Some(queue) = &runner.results {
        let result = match &outcome {
            Ok(run) => JobResult {
                status: RunStatus::Success,
                run_id: Some(run.id),
                error: None,
            },
            Err(f) => JobResult {
                status: RunStatus::Failed,
                run_id: f.run.as_ref().map(|r| r.id),
                error: Some(f.message.clone()),
            },
        };
        if let Err(e) = queue.set_result(task_id, &result).await {
            tracing::warn!(error = %e, task_id, "could not store the job result");
        }
    }
    outcome
}

/// Sends the job's one notification: after the successful run, or after
/// the last failed attempt (never for an attempt that is retried). A
/// redelivered job whose run was already notified sends nothing.
async fn notify(ctx: &Context, job: &BackupJob, outcome: &Result<BackupRun, JobFailed>) {
    let notice = match outcome {
        Ok(run) | Err(JobFailed { run: Some(run), .. }) if run.notification.is_some() => return,
        Ok(run) => Notice::for_run(run),
        Err(JobFailed {
            run: Some(run),
            message,
        }) => Notice {
            error: message.clone(),
            ..Notice::for_run(run)
        },
        Err(JobFailed { run: None, message }) => {
            Notice::job_failed(job.backup_type, &job.target, message, Utc::now())
        }
    };
    ctx.notifier.finished(&ctx.history, &notice).await;
}

async fn attempts(runner: &Runner, job: &BackupJob, task_id: &str) -> Result<BackupRun, JobFailed> {
    let ctx = &runner.ctx;
    let fail = |message: String, run: Option<BackupRun>| JobFailed { message, run };
    let settings = &ctx.settings;
    let targets = match backup::select(settings, &[job.backup_type], Some(&job.target)) {
        Ok(t) => t,
        Err(e) => {
            // The target left the config after the job was queued.
            let message = e.to_string();
            tracing::error!(target = %job.target, error = %message, "backup job for an unknown target");
            return Err(fail(message, None));
        }
    };
    let target = targets[0];
    let held = runner
        .locks
        .acquire(
            &lock_name(job.backup_type, &job.target),
            settings.worker.lost_after(),
        )
        .await
        .map_err(|e| fail(e.to_string(), None))?;
    let result = async {
        let previous = ctx.history.task_runs(task_id).await.map_err(|e| fail(e.to_string(), None))?;
        if let Some(done) = previous.iter().find(|r| r.status == RunStatus::Success) {
            tracing::info!(run_id = done.id, task_id, "job already succeeded; not backing up twice");
            return Ok(done.clone());
        }
        for lost in previous.iter().filter(|r| r.status == RunStatus::Running) {
            // We hold the target lock, so whoever ran this is gone.
            finish_lost(ctx, lost, Utc::now()).await;
        }
        let max = i64::from(settings.retry.attempts);
        let mut attempt = previous.len() as i64 + 1;
        let mut last: Option<BackupRun> = previous.last().cloned();
        loop {
            if attempt > max {
                let message = format!(
                    "gave up after {max} attempt(s); last error: {}",
                    last.as_ref().map_or("none recorded", |r| r.error_message.as_str())
                );
                return Err(fail(message, last));
            }
            let request = Request {
                trigger: job.trigger,
                scheduled_for: job.scheduled_for,
                task_id: Some(task_id.to_string()),
                attempt,
            };
            let report = backup::run(ctx, target, &request, Progress::default())
                .await
                .map_err(|e| fail(e.to_string(), last.clone()))?;
            record_metrics(&report.run);
            let Some(error) = report.error else {
                return Ok(report.run);
            };
            let permanent = error.is_permanent();
            let message = report.run.error_message.clone();
            last = Some(report.run);
            if permanent {
                tracing::error!(attempt, error = %message, "permanent error; not retrying");
                return Err(fail(message, last));
            }
            if attempt >= max {
                tracing::error!(attempt, error = %message, "last attempt failed");
                return Err(fail(message, last));
            }
            let wait = settings.retry.backoff(attempt as u32);
            tracing::warn!(attempt, retry_in_seconds = wait.as_secs(), error = %message, "attempt failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
    .await;
    held.release().await;
    result
}

fn record_metrics(run: &BackupRun) {
    let labels = metric_labels(run);
    let mut with_status = labels.to_vec();
    with_status.push(("status", run.status.as_str().to_string()));
    metrics::counter!("backup_runs_total", &with_status).increment(1);
    if let Some(seconds) = run.duration_seconds {
        metrics::histogram!("backup_run_duration_seconds", &labels).record(seconds);
    }
    if run.status == RunStatus::Success {
        record_success(run);
    }
}

fn metric_labels(run: &BackupRun) -> [(&'static str, String); 2] {
    [
        ("type", run.backup_type.as_str().to_string()),
        ("target", run.target.clone()),
    ]
}

/// Sets the per-target gauges of a successful run: its time
/// (`backup_last_success_timestamp_seconds`) and artifact size.
pub fn record_success(run: &BackupRun) {
    let labels = metric_labels(run);
    if let Some(size) = run.size_bytes {
        metrics::gauge!("backup_artifact_bytes", &labels).set(size as f64);
    }
    let at = run.completed_at.unwrap_or(run.started_at);
    metrics::gauge!("backup_last_success_timestamp_seconds", &labels).set(at.timestamp() as f64);
}

/// Finishes a run whose process is gone as `failed`.
async fn finish_lost(ctx: &Context, run: &BackupRun, now: DateTime<Utc>) -> bool {
    let error = format!(
        "worker lost: {} stopped while running this backup (no heartbeat since the run's last \
         sign of life); the job is run again by another worker",
        run.worker
    );
    match ctx
        .history
        .finish(run, now, &Outcome::Failed { error })
        .await
    {
        Ok(_) => {
            tracing::warn!(run_id = run.id, worker = %run.worker, "finished a lost run as failed");
            true
        }
        // Finished meanwhile by its owner or another replica.
        Err(HistoryError::NotFound(_)) => false,
        Err(e) => {
            tracing::warn!(run_id = run.id, error = %e, "could not finish a lost run");
            false
        }
    }
}

/// Finishes every `running` row that has not beaten for
/// `worker.heartbeat_seconds x 3`: its process died (a killed worker, a
/// CLI interrupted by Ctrl-C). Returns the runs finished.
///
/// # Errors
///
/// When history cannot be read.
pub async fn repair_lost_runs(ctx: &Context, now: DateTime<Utc>) -> Result<Vec<BackupRun>, Error> {
    let lost_after =
        TimeDelta::from_std(ctx.settings.worker.lost_after()).unwrap_or(TimeDelta::MAX);
    let mut finished = Vec::new();
    for run in ctx.history.lost_runs(now - lost_after).await? {
        if finish_lost(ctx, &run, now).await {
            finished.push(run);
        }
    }
    Ok(finished)
}

/// What the maintenance job did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceReport {
    /// History rows deleted for being older than `history_retention_days`.
    pub deleted_runs: u64,
    /// Lost runs finished as failed.
    pub lost_runs: usize,
    /// Unfinished local uploads of killed runs removed from `.partial/`.
    pub partial_files: usize,
}

/// Unfinished uploads older than this are leftovers of killed runs (a live
/// backup writes its partial file continuously).
const PARTIAL_AGE: Duration = Duration::from_secs(24 * 3600);

/// The maintenance job: deletes history older than
/// `history_retention_days`, finishes lost runs, and removes a day-old
/// unfinished local uploads.
///
/// # Errors
///
/// When history fails.
pub async fn run_maintenance(
    ctx: &Context,
    now: DateTime<Utc>,
) -> Result<MaintenanceReport, Error> {
    let lost_runs = repair_lost_runs(ctx, now).await?.len();
    let cutoff = now - TimeDelta::days(i64::from(ctx.settings.history_retention_days));
    let old: Vec<i64> = ctx
        .history
        .started_before(cutoff)
        .await?
        .iter()
        .map(|r| r.id)
        .collect();
    let deleted_runs = ctx.history.delete(&old).await?;
    let partial_files = ctx.storage.prune_partials(PARTIAL_AGE).await?;
    tracing::info!(deleted_runs, lost_runs, partial_files, "maintenance done");
    Ok(MaintenanceReport {
        deleted_runs,
        lost_runs,
        partial_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::NewRun;

    /// A runner backing up the sample SQLite database to local storage,
    /// with history in a temporary directory.
    async fn runner(dir: &std::path::Path) -> Runner {
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sample.sqlite3");
        std::fs::copy(sample, dir.join("app.sqlite3")).expect("copy sample");
        let settings = crate::config::from_toml(
            "[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"store\"\n\
             [database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n",
            dir,
        )
        .expect("config");
        Runner {
            ctx: Context::open(settings).await.expect("context"),
            locks: Locks::local(),
            results: None,
        }
    }

    fn job() -> BackupJob {
        BackupJob {
            backup_type: BackupType::Database,
            target: "app".into(),
            trigger: Trigger::Manual,
            scheduled_for: None,
        }
    }

    #[tokio::test]
    async fn a_redelivered_job_that_already_succeeded_is_not_backed_up_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = runner(dir.path()).await;
        let first = run_backup(&runner, &job(), "task-1")
            .await
            .expect("first run");
        let again = run_backup(&runner, &job(), "task-1")
            .await
            .expect("redelivery");
        assert_eq!((again.id, &again.sha256), (first.id, &first.sha256));
        let runs = runner.ctx.history.task_runs("task-1").await.expect("runs");
        assert_eq!(runs.len(), 1, "{runs:#?}");
        // Notified once (no [smtp] here, so the mail was skipped).
        assert_eq!(runs[0].notification.as_deref(), Some("skipped"));
    }

    #[tokio::test]
    async fn a_redelivered_job_finishes_the_lost_attempt_and_numbers_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = runner(dir.path()).await;
        // The first delivery's worker died mid-run.
        runner
            .ctx
            .history
            .start(&NewRun {
                backup_type: BackupType::Database,
                target: "app".into(),
                trigger: Trigger::Manual,
                scheduled_for: None,
                task_id: Some("task-2".into()),
                attempt: 1,
                worker: "dead-host:1".into(),
                started_at: Utc::now(),
            })
            .await
            .expect("start");
        let done = run_backup(&runner, &job(), "task-2")
            .await
            .expect("redelivery");
        assert_eq!(done.attempt, 2);
        assert_eq!(done.status, RunStatus::Success);
        let runs = runner.ctx.history.task_runs("task-2").await.expect("runs");
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].status, RunStatus::Failed);
        assert!(
            runs[0]
                .error_message
                .starts_with("worker lost: dead-host:1"),
            "{}",
            runs[0].error_message
        );
    }
}

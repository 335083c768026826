//! The backup job: one target backed up under its lock, idempotent on its
//! task id (a redelivered job that already succeeded is not run again; the
//! rows of a lost delivery are finished), attempts numbered across
//! deliveries, one notification per job, and the final result kept for
//! `trigger --wait`. The worker's queues and `backup-cli backup` both run
//! backups through [`run_backup`].

use std::sync::Arc;

use apalis::prelude::{AbortError, Data, TaskId};
use chrono::Utc;

use super::payload::BackupJob;
use crate::{
    backup::{self, Request},
    context::Context,
    health,
    history::BackupRun,
    lock::{Locks, lock_name},
    maintenance::finish_lost,
    model::RunStatus,
    notify::Notice,
    pipeline::Progress,
    queue::{JobResult, Queue},
    storage::Manifest,
};

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Settings, storage, history.
    pub ctx: Context,
    /// Target locks.
    pub locks: Locks,
    /// Where final results go for `trigger --wait` (queue mode).
    pub results: Option<Queue>,
    /// Attempts per job, the first included: `retry.attempts` in the worker,
    /// 1 for `backup-cli backup`, whose user is waiting.
    pub attempts: u32,
}

impl Runner {
    /// A runner with the worker's retry policy (`retry.attempts`).
    pub fn new(ctx: Context, locks: Locks, results: Option<Queue>) -> Self {
        let attempts = ctx.settings.retry.attempts;
        Self {
            ctx,
            locks,
            results,
            attempts,
        }
    }
}

/// A job that ended with a successful run.
#[derive(Debug)]
pub struct Done {
    /// The successful run, with what became of its notification.
    pub run: BackupRun,
    /// Its manifest (none when a redelivered job had already succeeded).
    pub manifest: Option<Manifest>,
    /// Non-fatal things the operator should know.
    pub warnings: Vec<String>,
    /// Artifacts deleted by retention after the run.
    pub pruned: Vec<String>,
}

/// Why a backup job ended without a successful run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JobFailed {
    /// One-line cause (redacted).
    pub message: String,
    /// The last attempt's row (with what became of its notification), when
    /// one was recorded.
    pub run: Option<BackupRun>,
}

/// Runs a backup job: waits for the target's lock; with a `task_id`, skips
/// if this task already succeeded (a redelivered job) and finishes the rows
/// of a lost earlier delivery; then runs attempts until one succeeds, an
/// error is permanent, or the runner's attempts are used. Notifies once,
/// and stores the result for `trigger --wait`.
///
/// # Errors
///
/// [`JobFailed`] when no attempt succeeded; the job is then over (the
/// worker tells apalis not to run it again).
pub async fn run_backup(
    runner: &Runner,
    job: &BackupJob,
    task_id: Option<&str>,
    progress: Progress,
) -> Result<Done, JobFailed> {
    let mut outcome = attempts(runner, job, task_id, progress).await;
    notify(&runner.ctx, job, &mut outcome).await;
    if let (Some(queue), Some(task_id)) = (&runner.results, task_id) {
        let result = match &outcome {
            Ok(done) => JobResult {
                status: RunStatus::Success,
                run_id: Some(done.run.id),
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

/// The apalis handler of the backup queues: runs the job; any failure ends
/// it (apalis must not retry it: attempts are ours, see [`run_backup`]).
///
/// # Errors
///
/// [`AbortError`] when no attempt succeeded.
pub async fn backup_handler(
    job: BackupJob,
    task_id: TaskId,
    runner: Data<Arc<Runner>>,
) -> Result<(), AbortError> {
    run_backup(
        &runner,
        &job,
        Some(&task_id.to_string()),
        Progress::default(),
    )
    .await
    .map(|_| ())
    .map_err(AbortError::new)
}

/// Sends the job's one notification: after the successful run, or after
/// the last failed attempt (never for an attempt that is retried). A
/// redelivered job whose run was already notified sends nothing. Records
/// the mail's fate on the returned run.
async fn notify(ctx: &Context, job: &BackupJob, outcome: &mut Result<Done, JobFailed>) {
    let (notice, run) = match outcome {
        Ok(Done { run, .. }) | Err(JobFailed { run: Some(run), .. })
            if run.notification.is_some() =>
        {
            return;
        }
        Ok(Done { run, .. }) => (Notice::for_run(run), Some(run)),
        Err(JobFailed {
            run: Some(run),
            message,
        }) => (
            Notice {
                error: message.clone(),
                ..Notice::for_run(run)
            },
            Some(run),
        ),
        Err(JobFailed { run: None, message }) => (
            Notice::job_failed(job.backup_type, &job.target, message, Utc::now()),
            None,
        ),
    };
    let delivery = ctx.notifier.finished(&ctx.history, &notice).await;
    if let Some(run) = run {
        run.notification = Some(delivery.to_string());
    }
}

async fn attempts(
    runner: &Runner,
    job: &BackupJob,
    task_id: Option<&str>,
    progress: Progress,
) -> Result<Done, JobFailed> {
    let ctx = &runner.ctx;
    let fail = |message: String, run: Option<BackupRun>| JobFailed { message, run };
    let settings = &ctx.settings;
    let targets = match settings.targets(&[job.backup_type], Some(&job.target)) {
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
        let previous = match task_id {
            Some(task_id) => ctx.history.task_runs(task_id).await.map_err(|e| fail(e.to_string(), None))?,
            None => Vec::new(),
        };
        if let Some(done) = previous.iter().find(|r| r.status == RunStatus::Success) {
            tracing::info!(run_id = done.id, task_id, "job already succeeded; not backing up twice");
            return Ok(Done { run: done.clone(), manifest: None, warnings: Vec::new(), pruned: Vec::new() });
        }
        for lost in previous.iter().filter(|r| r.status == RunStatus::Running) {
            // We hold the target lock, so whoever ran this is gone.
            finish_lost(ctx, lost, Utc::now()).await;
        }
        let max = i64::from(runner.attempts);
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
                task_id: task_id.map(str::to_string),
                attempt,
            };
            let report = backup::run(ctx, target, &request, progress.clone())
                .await
                .map_err(|e| fail(e.to_string(), last.clone()))?;
            health::record_run(&report.run);
            let Some(error) = report.error else {
                return Ok(Done {
                    run: report.run,
                    manifest: report.manifest,
                    warnings: report.warnings,
                    pruned: report.pruned,
                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        history::NewRun,
        model::{BackupType, Trigger},
    };

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
        Runner::new(
            Context::open(settings).await.expect("context"),
            Locks::local(),
            None,
        )
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
        let first = run_backup(&runner, &job(), Some("task-1"), Progress::default())
            .await
            .expect("first run")
            .run;
        let again = run_backup(&runner, &job(), Some("task-1"), Progress::default())
            .await
            .expect("redelivery")
            .run;
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
        let done = run_backup(&runner, &job(), Some("task-2"), Progress::default())
            .await
            .expect("redelivery")
            .run;
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

//! The backup job.
//!
//! [`attempt`] runs one attempt: the target backed up under its lock,
//! idempotent on the job's id (a redelivered job that already succeeded is
//! not run again; the rows of a lost delivery are finished), numbered on
//! from the job's earlier attempts. [`settle`] is the retry policy: after
//! an attempt, the job is done, failed for good, or to be tried again after
//! a backoff; a finished job is notified once and its result kept for
//! `trigger --wait`. The queue workers apply the policy in a tower layer
//! ([`super::retry`]) that schedules a retry as a new delivery;
//! single-process mode and `backup-cli backup` use [`run_backup`].

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, IntoResponse, TaskId};
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

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempted {
    /// A successful run, or the job had already succeeded (a redelivery).
    Succeeded(Box<Done>),
    /// No successful run.
    Failed {
        /// Why, and the attempt's row when one was recorded.
        failed: Box<JobFailed>,
        /// Whether another attempt cannot help (bad credentials, a missing
        /// target or tool, or no attempts left).
        permanent: bool,
        /// The job's attempts so far, this one included.
        attempts: u32,
    },
}

impl IntoResponse for Attempted {
    type Output = Self;

    fn into_response(self) -> Result<Self, BoxDynError> {
        Ok(self)
    }
}

/// The job's state after an attempt, as the retry policy sees it.
#[derive(Debug)]
pub enum Settled {
    /// A successful run; notified.
    Done(Box<Done>),
    /// Failed for good (permanent, or the last attempt); notified.
    Failed(JobFailed),
    /// Try again after this backoff: a new delivery of the same job.
    RetryAfter(Duration, JobFailed),
}

/// Runs one attempt of a backup job under the target's lock. With a job
/// id, a job that already succeeded is not backed up again, rows of a lost
/// earlier delivery are finished, and the attempt is numbered on; a job
/// that already used its attempts fails without running.
pub async fn attempt(
    runner: &Runner,
    job: &BackupJob,
    job_id: Option<&str>,
    progress: Progress,
) -> Attempted {
    let ctx = &runner.ctx;
    let settings = &ctx.settings;
    let failed = |message: String, run: Option<BackupRun>, permanent: bool, attempts: u32| {
        Attempted::Failed {
            failed: Box::new(JobFailed { message, run }),
            permanent,
            attempts,
        }
    };
    let targets = match settings.targets(&[job.backup_type], Some(&job.target)) {
        Ok(t) => t,
        Err(e) => {
            // The target left the config after the job was queued.
            let message = e.to_string();
            tracing::error!(target = %job.target, error = %message, "backup job for an unknown target");
            return failed(message, None, true, 1);
        }
    };
    let target = targets[0];
    let held = match runner
        .locks
        .acquire(
            &lock_name(job.backup_type, &job.target),
            settings.worker.lost_after(),
        )
        .await
    {
        Ok(held) => held,
        Err(e) => return failed(e.to_string(), None, false, 1),
    };
    let result = async {
        let previous = match job_id {
            Some(id) => match ctx.history.task_runs(id).await {
                Ok(runs) => runs,
                Err(e) => return failed(e.to_string(), None, false, 1),
            },
            None => Vec::new(),
        };
        if let Some(done) = previous.iter().find(|r| r.status == RunStatus::Success) {
            tracing::info!(
                run_id = done.id,
                job_id,
                "job already succeeded; not backing up twice"
            );
            return Attempted::Succeeded(Box::new(Done {
                run: done.clone(),
                manifest: None,
                warnings: Vec::new(),
                pruned: Vec::new(),
            }));
        }
        for lost in previous.iter().filter(|r| r.status == RunStatus::Running) {
            // We hold the target lock, so whoever ran this is gone.
            finish_lost(ctx, lost, Utc::now()).await;
        }
        let attempts = previous.len() as u32 + 1;
        let last = previous.last().cloned();
        if attempts > runner.attempts {
            let message = format!(
                "gave up after {} attempt(s); last error: {}",
                runner.attempts,
                last.as_ref()
                    .map_or("none recorded", |r| r.error_message.as_str())
            );
            return failed(message, last, true, attempts - 1);
        }
        let request = Request {
            trigger: job.trigger,
            scheduled_for: job.scheduled_for,
            task_id: job_id.map(str::to_string),
            attempt: i64::from(attempts),
            triggered_by: job.triggered_by.clone(),
        };
        let report = match backup::run(ctx, target, &request, progress).await {
            Ok(report) => report,
            Err(e) => return failed(e.to_string(), last, false, attempts),
        };
        health::record_run(&report.run);
        match report.error {
            None => Attempted::Succeeded(Box::new(Done {
                run: report.run,
                manifest: report.manifest,
                warnings: report.warnings,
                pruned: report.pruned,
            })),
            Some(error) => {
                let message = report.run.error_message.clone();
                failed(message, Some(report.run), error.is_permanent(), attempts)
            }
        }
    }
    .await;
    held.release().await;
    result
}

/// The retry policy, applied after an attempt: a success or a failure
/// that another attempt cannot help (permanent, or the last of
/// `retry.attempts`) ends the job, notified once and its result kept for
/// `trigger --wait`; any other failure is tried again after the backoff,
/// without a notification.
pub async fn settle(
    runner: &Runner,
    job: &BackupJob,
    job_id: Option<&str>,
    attempted: Attempted,
) -> Settled {
    let mut outcome = match attempted {
        Attempted::Succeeded(done) => Ok(*done),
        Attempted::Failed {
            failed,
            permanent: false,
            attempts,
        } if attempts < runner.attempts => {
            let wait = runner.ctx.settings.retry.backoff(attempts);
            tracing::warn!(
                attempt = attempts,
                retry_in_seconds = wait.as_secs(),
                error = %failed.message,
                "attempt failed; retrying"
            );
            return Settled::RetryAfter(wait, *failed);
        }
        Attempted::Failed {
            failed,
            permanent,
            attempts,
        } => {
            if permanent {
                tracing::error!(attempt = attempts, error = %failed.message, "permanent error; not retrying");
            } else {
                tracing::error!(attempt = attempts, error = %failed.message, "last attempt failed");
            }
            Err(*failed)
        }
    };
    notify(&runner.ctx, job, &mut outcome).await;
    if let (Some(queue), Some(id)) = (&runner.results, job_id) {
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
        if let Err(e) = queue.set_result(id, &result).await {
            tracing::warn!(error = %e, job_id = id, "could not store the job result");
        }
    }
    match outcome {
        Ok(done) => Settled::Done(Box::new(done)),
        Err(failed) => Settled::Failed(failed),
    }
}

/// Runs a backup job in this process: attempts, with the backoff waited
/// here, until the job is settled. For `backup-cli backup` (one attempt)
/// and single-process mode, where each job is a task of its own, so a
/// backoff holds up no other target.
///
/// # Errors
///
/// [`JobFailed`] when no attempt succeeded.
pub async fn run_backup(
    runner: &Runner,
    job: &BackupJob,
    job_id: Option<&str>,
    progress: Progress,
) -> Result<Done, JobFailed> {
    loop {
        let attempted = attempt(runner, job, job_id, progress.clone()).await;
        match settle(runner, job, job_id, attempted).await {
            Settled::Done(done) => return Ok(*done),
            Settled::Failed(failed) => return Err(failed),
            Settled::RetryAfter(wait, _) => tokio::time::sleep(wait).await,
        }
    }
}

/// The apalis handler of the backup queues: one attempt of the job. The
/// retry layer ([`super::retry::RetryLayer`]) decides what follows.
pub async fn backup_handler(
    job: BackupJob,
    task_id: TaskId,
    runner: Data<Arc<Runner>>,
) -> Attempted {
    let id = job.id(Some(&task_id.to_string()));
    attempt(&runner, &job, id.as_deref(), Progress::default()).await
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
            triggered_by: None,
            scheduled_for: None,
            job_id: None,
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
                triggered_by: None,
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

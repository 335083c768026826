//! Keeping history and storage tidy: lost runs (rows of processes that
//! died) finished as failed, history older than `history_retention_days`
//! deleted (a pure plan, then its application), and day-old unfinished
//! local uploads removed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::{
    Error,
    context::Context,
    history::{BackupRun, History, HistoryError, Outcome},
};

/// Finishes a run whose process is gone as `failed`; false when it was
/// finished meanwhile (by its owner or another replica).
pub(crate) async fn finish_lost(ctx: &Context, run: &BackupRun, now: DateTime<Utc>) -> bool {
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
            match ctx.storage.remove_partials_of(run.id).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    run_id = run.id,
                    files = n,
                    "removed the lost run's unfinished upload"
                ),
                Err(e) => {
                    tracing::warn!(run_id = run.id, error = %e, "could not remove the lost run's unfinished upload")
                }
            }
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
    let before = now
        .checked_sub_signed(lost_after)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    for run in ctx.history.lost_runs(before).await? {
        if finish_lost(ctx, &run, now).await {
            finished.push(run);
        }
    }
    Ok(finished)
}

/// The history cleanup: runs that started before `cutoff`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryCleanup {
    /// Runs started before this are deleted.
    pub cutoff: DateTime<Utc>,
    /// The retention in days that gave `cutoff`.
    pub days: u32,
    /// The runs to delete, oldest first.
    pub runs: Vec<BackupRun>,
}

/// Plans the deletion of runs older than `days` at `now`; changes nothing.
///
/// # Errors
///
/// When history cannot be read.
pub async fn plan_history_cleanup(
    history: &History,
    days: u32,
    now: DateTime<Utc>,
) -> Result<HistoryCleanup, HistoryError> {
    // Saturates: a cutoff before the calendar begins matches no run.
    let cutoff = TimeDelta::try_days(i64::from(days))
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    Ok(HistoryCleanup {
        cutoff,
        days,
        runs: history.started_before(cutoff).await?,
    })
}

/// Deletes the planned runs in one transaction; returns how many went.
///
/// # Errors
///
/// When the delete fails (then none are deleted).
pub async fn apply_history_cleanup(
    history: &History,
    plan: &HistoryCleanup,
) -> Result<u64, HistoryError> {
    let ids: Vec<i64> = plan.runs.iter().map(|r| r.id).collect();
    history.delete(&ids).await
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
    let plan = plan_history_cleanup(&ctx.history, ctx.settings.history_retention_days, now).await?;
    let deleted_runs = apply_history_cleanup(&ctx.history, &plan).await?;
    let partial_files = ctx.storage.prune_partials(PARTIAL_AGE).await?;
    tracing::info!(deleted_runs, lost_runs, partial_files, "maintenance done");
    Ok(MaintenanceReport {
        deleted_runs,
        lost_runs,
        partial_files,
    })
}

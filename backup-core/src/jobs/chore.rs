//! The chores of the maintenance queue: the daily maintenance, and the
//! scheduled verification of the newest artifacts with restore drills.

use std::sync::Arc;

use apalis::prelude::{AbortError, Data};
use chrono::Utc;

use super::{
    backup::Runner,
    payload::{Chore, MaintenanceJob},
};
use crate::{
    Error,
    context::Context,
    maintenance::run_maintenance,
    model::BackupType,
    notify::Notice,
    pipeline::Progress,
    restore::{self, RestoreError, Scope},
};

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

/// The apalis handler of the maintenance queue.
///
/// # Errors
///
/// [`AbortError`] when the chore failed (it is not retried: the next fire
/// comes).
pub async fn chore_handler(
    job: MaintenanceJob,
    runner: Data<Arc<Runner>>,
) -> Result<(), AbortError> {
    run_chore(&runner.ctx, &job).await.map_err(AbortError::new)
}

/// The scheduled verification: verifies the newest artifact of each target;
/// for a database artifact that passes, drills its restore into a scratch
/// database (`verify_scratch` for PostgreSQL and MySQL, a temporary file for
/// SQLite; no drill where none is configured). Every failure is notified
/// like a failed backup. Returns how many artifacts failed.
///
/// # Errors
///
/// When storage cannot be listed or history read.
pub async fn run_verification(ctx: &Context) -> Result<usize, Error> {
    let results = match restore::verify(ctx, &Scope::Latest, None).await {
        Ok(results) => results,
        Err(Error::Restore(RestoreError::NotFound(why))) => {
            tracing::info!(reason = %why, "nothing to verify");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let mut failed = 0;
    for result in &results {
        let mut problem = (!result.ok).then(|| result.detail.clone());
        if problem.is_none() && result.backup_type == BackupType::Database {
            match restore::drill_verified(ctx, result, None, Progress::default()).await {
                Ok(None) => {}
                Ok(Some(drill)) if drill.report.error.is_none() => tracing::info!(
                    target = %result.target,
                    tables = drill.tables.len(),
                    rows = drill.tables.iter().map(|(_, n)| n).sum::<u64>(),
                    "restore drill passed"
                ),
                Ok(Some(drill)) => {
                    problem = Some(format!(
                        "restore drill failed: {}",
                        drill.report.run.error_message
                    ));
                }
                Err(e) => problem = Some(format!("restore drill failed: {e}")),
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

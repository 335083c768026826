//! Restore rows: a restore runs under a history row, `running` then its
//! outcome.

use std::future::Future;

use crate::{
    Error,
    context::Context,
    history::{NewRestore, RestoreRun},
    model::{RestoreKind, one_line},
    storage::Manifest,
};

/// The outcome of a restore: its history row, and the error if it failed.
#[derive(Debug)]
pub struct RestoreReport {
    /// The finished row.
    pub run: RestoreRun,
    /// Why it failed (also in `run.error_message`).
    pub error: Option<Error>,
}

/// Runs `work` under a restore row: `running`, then its outcome.
pub(crate) async fn record(
    ctx: &Context,
    kind: RestoreKind,
    manifest: &Manifest,
    destination: &str,
    work: impl Future<Output = Result<(u64, u64), Error>>,
) -> Result<RestoreReport, Error> {
    let started = ctx
        .history
        .start_restore(&NewRestore {
            kind,
            backup_type: manifest.backup_type,
            target: manifest.target.clone(),
            source_run_id: Some(manifest.run_id),
            artifact: manifest.artifact.clone(),
            destination: destination.to_string(),
            worker: ctx.worker.clone(),
        })
        .await?;
    tracing::info!(restore_id = started.id, artifact = %manifest.artifact, destination, "restore started");
    match work.await {
        Ok(done) => {
            let run = ctx.history.finish_restore(&started, Ok(done)).await?;
            tracing::info!(
                restore_id = run.id,
                bytes = done.0,
                items = done.1,
                "restore succeeded"
            );
            Ok(RestoreReport { run, error: None })
        }
        Err(e) => {
            let message = one_line(&e.to_string());
            tracing::error!(restore_id = started.id, error = %message, "restore failed");
            let run = ctx.history.finish_restore(&started, Err(&message)).await?;
            Ok(RestoreReport {
                run,
                error: Some(e),
            })
        }
    }
}

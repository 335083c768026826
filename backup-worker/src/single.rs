//! Single-process mode (no `[queue]`): this process fires the schedules and
//! runs the jobs itself, with the same handlers, history and semantics. A
//! lock on the history database keeps a second instance from starting.

use std::{sync::Arc, time::Duration};

use anyhow::anyhow;
use backup_core::{
    context::Context,
    health::Health,
    jobs::Runner,
    lock::Locks,
    scheduler::{self, LocalDispatch},
};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

/// Runs until `signal`, then lets running backups finish within the grace
/// period.
pub async fn run(
    ctx: Context,
    health: Health,
    metrics: Option<PrometheusHandle>,
    stop: watch::Receiver<bool>,
    signal: impl Future<Output = std::io::Result<()>> + Send,
) -> anyhow::Result<()> {
    let _instance = ctx
        .history
        .instance_lock()
        .await?
        .ok_or_else(|| {
            anyhow!(
                "another backup-worker already runs the schedules of run history {} (single-process \
                 mode: no [queue] configured); stop it, or configure [queue] to run several workers",
                ctx.history.url()
            )
        })?;
    tracing::info!(history = %ctx.history.url(), "single-process mode: no [queue], running jobs in this process");
    let dispatch = LocalDispatch::new(Arc::new(Runner::new(ctx.clone(), Locks::local(), None)));
    let launcher = backup_web::Launcher::Local(dispatch.clone());
    let http = backup_web::serve(backup_web::web(
        ctx.clone(),
        health.clone(),
        metrics,
        launcher,
    ))
    .await?;
    let mut cron = tokio::spawn(scheduler::run(ctx.clone(), dispatch.clone(), health, stop));
    tokio::select! {
        signalled = signal => {
            signalled?;
            let _ = cron.await;
        }
        // The scheduler only returns on shutdown; anything else (a panic)
        // must not leave a process that no longer fires schedules.
        ended = &mut cron => anyhow::bail!(
            "the scheduler stopped unexpectedly ({ended:?}); exiting so the process is restarted"
        ),
    }
    dispatch
        .drain(Duration::from_secs(
            ctx.settings.worker.shutdown_grace_seconds,
        ))
        .await;
    if let Some(http) = http {
        http.abort();
    }
    tracing::info!("backup-worker stopped");
    Ok(())
}

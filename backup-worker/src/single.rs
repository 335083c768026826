//! Single-process mode (no `[queue]`): this process fires the schedules and
//! runs the jobs itself, with the same handlers, history and semantics. A
//! lock on the history database keeps a second instance from starting.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::anyhow;
use backup_core::{
    Error,
    backup::Context,
    jobs::{self, BackupJob, Locks, MaintenanceJob, Runner},
    scheduler::{self, Dispatch},
};
use tokio::{sync::watch, task::JoinSet};

use crate::health::{self, Health};

/// Runs until `signal`, then lets running backups finish within the grace
/// period.
pub async fn run(
    ctx: Context,
    health: Health,
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
    let tasks = Arc::new(Mutex::new(JoinSet::new()));
    let dispatch = LocalDispatch {
        runner: Arc::new(Runner {
            ctx: ctx.clone(),
            locks: Locks::local(),
            results: None,
        }),
        tasks: tasks.clone(),
    };
    let http = health::serve(&ctx.settings.http.listen, health).await?;
    let mut cron = tokio::spawn(scheduler::run(ctx.clone(), dispatch, stop));
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
    let mut running = std::mem::take(&mut *tasks.lock().unwrap_or_else(|p| p.into_inner()));
    let grace = Duration::from_secs(ctx.settings.worker.shutdown_grace_seconds);
    if !running.is_empty() {
        tracing::info!(
            jobs = running.len(),
            grace_seconds = grace.as_secs(),
            "waiting for running jobs"
        );
    }
    let drained = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            jobs = running.len(),
            "grace period over; interrupting running backups"
        );
        running.shutdown().await;
    }
    if let Some(http) = http {
        http.abort();
    }
    tracing::info!("backup-worker stopped");
    Ok(())
}

struct LocalDispatch {
    runner: Arc<Runner>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl LocalDispatch {
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished jobs so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(work);
    }
}

impl Dispatch for LocalDispatch {
    async fn backup(&self, _schedule: &str, job: BackupJob) -> Result<bool, Error> {
        let runner = self.runner.clone();
        let task_id = uuid::Uuid::new_v4().simple().to_string();
        self.spawn(async move {
            let _ = jobs::run_backup(&runner, &job, &task_id).await;
        });
        Ok(true)
    }

    async fn maintenance(&self, job: MaintenanceJob) -> Result<bool, Error> {
        let runner = self.runner.clone();
        self.spawn(async move {
            if let Err(e) = jobs::run_chore(&runner.ctx, &job).await {
                tracing::error!(error = %e, chore = job.chore.as_str(), "chore failed");
            }
        });
        Ok(true)
    }
}

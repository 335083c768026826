//! Running one backup of one target end to end: history row, source,
//! pipeline, storage, manifest, retention. Job handlers call it, one attempt
//! at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::{
    Error,
    config::Target,
    context::Context,
    crypt::Sealer,
    engine::{self, Source},
    history::{BackupRun, NewRun, Outcome},
    model::{Trigger, one_line},
    pipeline::{self, Progress},
    retention,
    storage::{self, Encryption, Manifest},
};

/// Why and how a run is started.
#[derive(Debug, Clone)]
pub struct Request {
    /// Manual, scheduled or catch-up.
    pub trigger: Trigger,
    /// Fire time, when scheduled.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Queue task id, when queued.
    pub task_id: Option<String>,
    /// Attempt number, from 1.
    pub attempt: i64,
    /// Who asked for it, when manual.
    pub triggered_by: Option<String>,
}

impl Request {
    /// A backup started by hand, now.
    pub fn manual() -> Self {
        Self {
            trigger: Trigger::Manual,
            scheduled_for: None,
            task_id: None,
            attempt: 1,
            triggered_by: None,
        }
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct Report {
    /// The finished history row.
    pub run: BackupRun,
    /// The manifest, on success.
    pub manifest: Option<Manifest>,
    /// Non-fatal things the operator should know (skipped files, retention trouble).
    pub warnings: Vec<String>,
    /// Artifacts deleted by retention after this run.
    pub pruned: Vec<String>,
    /// The failure, when the run failed (its message is in `run.error_message`).
    pub error: Option<Error>,
}

/// Backs up one target and records the run. A failure of the backup itself
/// is a finished `failed` run in the report, not an `Err`.
///
/// # Errors
///
/// Only when the run cannot be recorded in history.
pub async fn run(
    ctx: &Context,
    target: Target<'_>,
    request: &Request,
    progress: Progress,
) -> Result<Report, Error> {
    let started = ctx
        .history
        .start(&NewRun {
            backup_type: target.backup_type(),
            target: target.name().to_string(),
            trigger: request.trigger,
            triggered_by: request.triggered_by.clone(),
            scheduled_for: request.scheduled_for,
            task_id: request.task_id.clone(),
            attempt: request.attempt,
            worker: ctx.worker.clone(),
            started_at: Utc::now(),
        })
        .await?;
    let span = tracing::info_span!(
        "backup",
        run_id = started.id,
        target = target.name(),
        backup_type = %target.backup_type(),
        attempt = request.attempt
    );
    async move {
        tracing::info!("backup started");
        // The start ping runs beside the backup (never delaying it) and is
        // over before the run ends, so it cannot arrive after the end ping.
        let (result, ()) = tokio::join!(
            with_heartbeat(ctx, started.id, execute(ctx, target, &started, progress)),
            ctx.notifier.run_started(target.backup_type())
        );
        match result {
            Ok((manifest, mut warnings)) => {
                let run = ctx
                    .history
                    .finish(&started, Utc::now(), &Outcome::Success {
                        artifact: manifest.artifact.clone(),
                        size_bytes: manifest.size_bytes,
                        sha256: manifest.sha256.clone(),
                    })
                    .await?;
                tracing::info!(artifact = %manifest.artifact, size = manifest.size_bytes, "backup succeeded");
                let pruned = match prune(ctx, target, &manifest.artifact).await {
                    Ok(pruned) => pruned,
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed; older artifacts were kept");
                        warnings.push(format!("retention failed, older artifacts were kept: {e}"));
                        Vec::new()
                    }
                };
                Ok(Report { run, manifest: Some(manifest), warnings, pruned, error: None })
            }
            Err(e) => {
                let message = one_line(&e.to_string());
                tracing::error!(error = %message, "backup failed");
                let run = ctx.history.finish(&started, Utc::now(), &Outcome::Failed { error: message }).await?;
                Ok(Report { run, manifest: None, warnings: Vec::new(), pruned: Vec::new(), error: Some(e) })
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs `work` while beating the run's heartbeat, so that a run whose
/// process dies is recognised as lost (see `History::lost_runs`).
///
/// The beats run on a task of their own: a history database that is slow
/// or locked delays a beat, never the backup's data path.
async fn with_heartbeat<T>(ctx: &Context, run_id: i64, work: impl Future<Output = T>) -> T {
    let history = ctx.history.clone();
    let every = Duration::from_secs(ctx.settings.worker.heartbeat_seconds);
    let beats = tokio::spawn(
        async move {
            let mut beat = tokio::time::interval(every);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                beat.tick().await;
                if let Err(e) = history.beat(run_id, Utc::now()).await {
                    tracing::warn!(error = %e, "could not record the run's heartbeat");
                }
            }
        }
        .in_current_span(),
    );
    let done = work.await;
    beats.abort();
    done
}

async fn execute(
    ctx: &Context,
    target: Target<'_>,
    run: &BackupRun,
    progress: Progress,
) -> Result<(Manifest, Vec<String>), Error> {
    let settings = &ctx.settings;
    let Source {
        engine,
        format,
        extension,
        server_version,
        tool_version,
        producer,
    } = match target {
        Target::Database(t) => engine::prepare_database(t, &settings.tools).await?,
        Target::Media(t) => engine::media::prepare(t, &settings.media_backup.exclude).await?,
    };
    let codec = settings.compression.algorithm;
    let mut extension = match codec.extension() {
        Some(c) => format!("{extension}.{c}"),
        None => extension.to_string(),
    };
    let sealer = Sealer::from_settings(&settings.encryption).map_err(|source| Error::Io {
        context: "starting encryption".into(),
        source,
    })?;
    if sealer.is_some() {
        extension.push_str(Encryption::SUFFIX);
    }
    let key = storage::artifact_key(
        target.backup_type(),
        target.name(),
        run.started_at,
        run.id,
        &extension,
    );
    let writer = ctx.storage.writer(&key).await?;
    let encryption = sealer.as_ref().map(Sealer::manifest_entry);
    let (stats, written) =
        pipeline::run(producer, &settings.compression, sealer, writer, progress).await?;
    for warning in &stats.warnings {
        tracing::warn!("{warning}");
    }
    let manifest = Manifest {
        version: 1,
        run_id: run.id,
        backup_type: target.backup_type(),
        target: target.name().to_string(),
        engine: engine.to_string(),
        format: format.to_string(),
        server_version,
        tool_version,
        compression: codec.name().to_string(),
        artifact: key.clone(),
        size_bytes: written.size,
        sha256: written.sha256,
        source_bytes: written.source_bytes,
        files: stats.files,
        started_at: run.started_at,
        created_at: Utc::now(),
        encryption,
    };
    if let Err(e) = ctx.storage.write_manifest(&manifest).await {
        // Without its manifest the artifact is not a backup: take it away.
        if let Err(cleanup) = ctx.storage.delete_key(&key).await {
            tracing::warn!(error = %cleanup, key = %key, "could not remove the artifact of a failed run");
        }
        return Err(e.into());
    }
    Ok((manifest, stats.warnings))
}

/// Applies the retention rules of `[storage]` to the target's artifacts.
async fn prune(ctx: &Context, target: Target<'_>, written: &str) -> Result<Vec<String>, Error> {
    let mut plan = retention::plan_target(
        &ctx.storage,
        &ctx.settings.storage.retention(),
        ctx.settings.timezone.0,
        target.backup_type(),
        target.name(),
    )
    .await?;
    plan.protect(written);
    let deleted =
        retention::apply(&ctx.storage, &plan, target.backup_type(), target.name()).await?;
    for key in &deleted {
        tracing::info!(artifact = %key, "deleted by retention");
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use super::*;
    use crate::model::BackupType;

    /// Measured by an operator: with the history database locked, a backup
    /// took 6x as long, its stream waiting on the heartbeat's write.
    #[tokio::test]
    async fn a_locked_history_never_holds_up_the_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = crate::config::from_toml(
            "[history]\nurl = \"sqlite://history.db\"\n[worker]\nheartbeat_seconds = 1\n",
            dir.path(),
        )
        .expect("config");
        let ctx = Context::open(settings).await.expect("context");
        let run = ctx
            .history
            .start(&NewRun {
                backup_type: BackupType::Database,
                target: "app".into(),
                trigger: Trigger::Manual,
                triggered_by: None,
                scheduled_for: None,
                task_id: None,
                attempt: 1,
                worker: "test:1".into(),
                started_at: Utc::now(),
            })
            .await
            .expect("start");
        let url = format!("sqlite://{}", dir.path().join("history.db").display());
        let mut locker = SqliteConnection::connect(&url).await.expect("connect");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut locker)
            .await
            .expect("lock");
        // Work that needs the runtime to poll it a few times over a second:
        // the beats (every second, waiting on the lock) must not stop it.
        let work = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let done =
            tokio::time::timeout(Duration::from_secs(15), with_heartbeat(&ctx, run.id, work)).await;
        sqlx::query("ROLLBACK")
            .execute(&mut locker)
            .await
            .expect("unlock");
        assert!(done.is_ok(), "the backup waited for the locked history");
    }
}

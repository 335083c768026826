//! Liveness and metrics data: whether this worker is healthy (history and
//! Redis answer, every queue worker is alive) and the metric series of runs
//! and queues. The HTTP surface only renders what this module knows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use apalis::prelude::Event;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    config::Settings,
    context::Context,
    history::BackupRun,
    queue::{self, Queue},
    schedule::plan::{self, StoredSchedule},
};

/// Describes the metric series, once, after a recorder is installed.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "backup_runs_total",
        "Backup runs (attempts) by type, target and status."
    );
    metrics::describe_histogram!("backup_run_duration_seconds", "Wall time of backup runs.");
    metrics::describe_gauge!(
        "backup_artifact_bytes",
        "Size of the newest artifact per target."
    );
    metrics::describe_gauge!(
        "backup_last_success_timestamp_seconds",
        "Unix time of the newest successful backup per target."
    );
    metrics::describe_gauge!("backup_queue_depth", "Jobs waiting per queue.");
}

/// Records a finished run's duration (`backup_run_duration_seconds`, this
/// process's runs). The counts and last successes come from history at
/// each scrape ([`Health::refresh_from_history`]), whoever ran them.
pub fn record_run(run: &BackupRun) {
    if let Some(seconds) = run.duration_seconds {
        metrics::histogram!("backup_run_duration_seconds", &metric_labels(run)).record(seconds);
    }
}

fn metric_labels(run: &BackupRun) -> [(&'static str, String); 2] {
    [
        ("type", run.backup_type.as_str().to_string()),
        ("target", run.target.clone()),
    ]
}

/// Shared liveness state of one worker process.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    queue: OnceLock<(Queue, usize)>,
    /// Queue worker kind → alive.
    workers: Mutex<HashMap<String, bool>>,
    scheduler: Mutex<SchedulerView>,
}

/// What the cron side of this process works from: the stored schedules it
/// last loaded, whether they fire, how they differ from the config, and
/// how far it has dispatched their fires.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedulerView {
    /// `false` when the master switch (`enabled = false`) is off: no
    /// backup schedule fires.
    pub scheduled_backups: bool,
    /// The schedules loaded, by name; none before the first load.
    pub schedules: Option<Vec<ScheduleView>>,
    /// How the stored schedules differ from the config (what `schedules
    /// setup` would change); empty when they match.
    pub drift: Vec<String>,
    /// Every fire time up to this one has been dispatched (or found
    /// dispatched by another replica).
    pub checked_until: Option<DateTime<Utc>>,
}

/// One loaded schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// Whether the schedule itself is enabled.
    pub enabled: bool,
    /// Whether it fires: enabled, and its backups not switched off.
    pub fires: bool,
    /// Why it does not fire, when it does not.
    pub off: Option<String>,
}

impl Health {
    /// The liveness of a process working with `ctx`.
    pub fn new(ctx: Context) -> Self {
        let scheduled_backups = ctx.settings.enabled;
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue: OnceLock::new(),
                workers: Mutex::new(HashMap::new()),
                scheduler: Mutex::new(SchedulerView {
                    scheduled_backups,
                    ..SchedulerView::default()
                }),
            }),
        }
    }

    /// The cron side loaded these schedules, and fires them as `settings`
    /// say.
    pub fn schedules_loaded(&self, settings: &Settings, schedules: &[StoredSchedule]) {
        let loaded = schedules
            .iter()
            .map(|s| {
                let off = s.off(settings);
                ScheduleView {
                    name: s.schedule.name.clone(),
                    cron: s.schedule.cron.as_str().to_string(),
                    enabled: s.schedule.enabled,
                    fires: off.is_none(),
                    off,
                }
            })
            .collect();
        let mut view = self.scheduler();
        view.scheduled_backups = settings.enabled;
        view.schedules = Some(loaded);
        view.drift = plan::drift(settings, schedules);
    }

    /// The cron side dispatched every fire up to `until`.
    pub fn fires_checked(&self, until: DateTime<Utc>) {
        self.scheduler().checked_until = Some(until);
    }

    /// What the cron side works from, for `/healthz`.
    pub fn scheduler_view(&self) -> SchedulerView {
        self.scheduler().clone()
    }

    fn scheduler(&self) -> std::sync::MutexGuard<'_, SchedulerView> {
        self.inner
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Queue mode: Redis must answer and `workers` queue workers be alive.
    pub fn set_queue(&self, queue: Queue, workers: usize) {
        let _ = self.inner.queue.set((queue, workers));
    }

    /// Sets `backup_runs_total` and the per-target last-success gauges
    /// (`backup_last_success_timestamp_seconds`, `backup_artifact_bytes`)
    /// from run history, so they count backups made by any replica or by
    /// `backup-cli backup` as well as this process's.
    pub async fn refresh_from_history(&self) {
        let history = &self.inner.ctx.history;
        match history.run_counts().await {
            Ok(counts) => {
                for c in counts {
                    let labels = [
                        ("type", c.backup_type.as_str().to_string()),
                        ("target", c.target),
                        ("status", c.status.as_str().to_string()),
                    ];
                    metrics::counter!("backup_runs_total", &labels).absolute(c.runs.max(0) as u64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot count runs for /metrics"),
        }
        match history.last_successes().await {
            Ok(runs) => {
                for run in &runs {
                    let labels = metric_labels(run);
                    if let Some(size) = run.size_bytes {
                        metrics::gauge!("backup_artifact_bytes", &labels).set(size as f64);
                    }
                    let at = run.completed_at.unwrap_or(run.started_at);
                    metrics::gauge!("backup_last_success_timestamp_seconds", &labels)
                        .set(at.timestamp() as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the last successful runs"),
        }
    }

    /// Tracks queue workers from apalis events (names are
    /// `{host}-{pid}:{kind}:{restarts}`).
    pub fn on_worker_event(&self, name: &str, event: &Event) {
        let kind = name.split(':').rev().nth(1).unwrap_or(name).to_string();
        // Through a Redis outage workers stop and restart with backoff; the
        // connection reports the outage, once.
        let outage = self.inner.queue.get().is_some_and(|(q, _)| q.is_down());
        let alive = match event {
            Event::Start => true,
            Event::Stop | Event::Exit => false,
            Event::Error(e) if outage => {
                tracing::debug!(worker = name, error = %e, "queue worker error");
                return;
            }
            Event::Error(e) => {
                tracing::warn!(worker = name, error = %e, "queue worker error");
                return;
            }
            _ => return,
        };
        let state = if alive { "started" } else { "stopped" };
        if outage {
            tracing::debug!(worker = name, alive, "queue worker {state}");
        } else {
            tracing::info!(worker = name, alive, "queue worker {state}");
        }
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind, alive);
    }

    /// Problems that make the worker unhealthy; empty when healthy.
    pub async fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let timeout = Duration::from_secs(3);
        match tokio::time::timeout(timeout, self.inner.ctx.history.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("history: {e}")),
            Err(_) => problems.push("history: no answer within 3 s".into()),
        }
        if let Some((queue, expected)) = self.inner.queue.get() {
            match tokio::time::timeout(timeout, queue.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("queue: {e}")),
                Err(_) => problems.push("queue: no answer within 3 s".into()),
            }
            let alive = self
                .inner
                .workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|a| **a)
                .count();
            if alive < *expected {
                problems.push(format!("{alive} of {expected} queue workers alive"));
            }
        }
        problems
    }

    /// Sets `backup_queue_depth` of each queue, in queue mode.
    pub async fn refresh_queue_depths(&self) {
        let Some((queue, _)) = self.inner.queue.get() else {
            return;
        };
        for kind in [queue::DATABASE, queue::MEDIA, queue::MAINTENANCE] {
            match queue.depth(kind).await {
                Ok(depth) => {
                    metrics::gauge!("backup_queue_depth", "queue" => kind).set(depth as f64)
                }
                Err(e) => tracing::warn!(error = %e, "cannot read queue depth"),
            }
        }
    }
}

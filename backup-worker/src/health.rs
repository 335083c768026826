//! `/healthz` and `/metrics`: the worker's HTTP listener.
//!
//! `/healthz` answers 200 only when the history database and Redis answer
//! and every queue worker is alive (apalis keeps a process up with dead
//! workers; this is where that shows). `/metrics` is Prometheus text.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use apalis::prelude::Event;
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use backup_core::{
    backup::Context,
    history::{BackupType, RunFilter, RunStatus},
    jobs,
    queue::{self, Queue},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

/// Shared liveness state.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    queue: OnceLock<(Queue, usize)>,
    /// Queue worker kind → alive.
    workers: Mutex<HashMap<String, bool>>,
    prometheus: Option<PrometheusHandle>,
}

impl Health {
    /// Installs the Prometheus recorder and describes the metrics.
    pub fn new(ctx: Context) -> Self {
        let prometheus = match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics is empty");
                None
            }
        };
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
        Self {
            inner: Arc::new(Inner {
                ctx,
                queue: OnceLock::new(),
                workers: Mutex::new(HashMap::new()),
                prometheus,
            }),
        }
    }

    /// Queue mode: Redis must answer and `workers` queue workers be alive.
    pub fn set_queue(&self, queue: Queue, workers: usize) {
        let _ = self.inner.queue.set((queue, workers));
    }

    /// Sets the last-success gauges from history, so a restarted worker
    /// reports them before its first run.
    pub async fn seed_last_success(&self) {
        let ctx = &self.inner.ctx;
        let targets = backup_core::backup::select(
            &ctx.settings,
            &[BackupType::Database, BackupType::Media],
            None,
        )
        .unwrap_or_default();
        for target in targets {
            let filter = RunFilter {
                status: Some(RunStatus::Success),
                backup_type: Some(target.backup_type()),
                target: Some(target.name().to_string()),
                limit: 1,
                ..RunFilter::default()
            };
            match ctx.history.list(&filter).await {
                Ok(runs) => runs.iter().for_each(jobs::record_success),
                Err(e) => tracing::warn!(error = %e, "cannot read the last successful runs"),
            }
        }
    }

    /// Tracks queue workers from apalis events (names are
    /// `{host}-{pid}:{kind}:{restarts}`).
    pub fn on_worker_event(&self, name: &str, event: &Event) {
        let kind = name.split(':').rev().nth(1).unwrap_or(name).to_string();
        let alive = match event {
            Event::Start => true,
            Event::Stop | Event::Exit => false,
            Event::Error(e) => {
                tracing::warn!(worker = name, error = %e, "queue worker error");
                return;
            }
            _ => return,
        };
        tracing::info!(
            worker = name,
            alive,
            "queue worker {}",
            if alive { "started" } else { "stopped" }
        );
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind, alive);
    }

    /// Problems that make the worker unhealthy; empty when healthy.
    async fn problems(&self) -> Vec<String> {
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
}

async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    let problems = health.problems().await;
    if problems.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "problems": problems})),
        )
    }
}

async fn metrics_text(State(health): State<Health>) -> impl IntoResponse {
    if let Some((queue, _)) = health.inner.queue.get() {
        for kind in [queue::DATABASE, queue::MEDIA, queue::MAINTENANCE] {
            match queue.depth(kind).await {
                Ok(depth) => {
                    metrics::gauge!("backup_queue_depth", "queue" => kind).set(depth as f64)
                }
                Err(e) => tracing::warn!(error = %e, "cannot read queue depth"),
            }
        }
    }
    let body = health
        .inner
        .prometheus
        .as_ref()
        .map_or_else(String::new, |h| {
            h.run_upkeep();
            h.render()
        });
    ([("content-type", "text/plain; version=0.0.4")], body)
}

/// Starts the listener on `listen`; `None` when it is empty (off).
///
/// # Errors
///
/// When the address cannot be bound.
pub async fn serve(
    listen: &str,
    health: Health,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("http.listen {listen:?}"))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (http.listen); is another worker using it?")
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %bound, "serving /healthz and /metrics");
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(health);
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    })))
}

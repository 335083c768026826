//! `/healthz` and `/metrics`: the worker's HTTP listener. It renders what
//! `backup_core::health` knows; the Prometheus recorder lives here.
//!
//! `/healthz` answers 200 only when the history database and Redis answer
//! and every queue worker is alive (apalis keeps a process up with dead
//! workers; this is where that shows); its body also says which schedules
//! the cron side works from and how far it has fired them. `/metrics` is
//! Prometheus text.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use backup_core::health::{self, Health};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

/// Installs the Prometheus recorder and describes the metrics; `None` (and
/// an empty `/metrics`) when a recorder is already installed.
pub fn install_metrics() -> Option<PrometheusHandle> {
    match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => {
            health::describe_metrics();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the metrics recorder; /metrics is empty");
            None
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Option<PrometheusHandle>,
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let problems = state.health.problems().await;
    let scheduler = state.health.scheduler_view();
    if problems.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ok", "scheduler": scheduler})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "problems": problems, "scheduler": scheduler})),
        )
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    state.health.refresh_queue_depths().await;
    state.health.refresh_from_history().await;
    let body = state.metrics.as_ref().map_or_else(String::new, |h| {
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
    metrics: Option<PrometheusHandle>,
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
        .with_state(AppState { health, metrics });
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    })))
}

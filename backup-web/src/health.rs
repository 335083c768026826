//! `/healthz` and `/metrics`: what `backup_core::health` knows. `/healthz`
//! answers 200 only when the history database and Redis answer and every
//! queue worker is alive (apalis keeps a process up with dead workers; this
//! is where that shows); its body also says which schedules the cron side
//! works from and how far it has fired them. `/metrics` is Prometheus text.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use backup_core::health;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::state::AppState;

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

pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let health = &state.web().health;
    let problems = health.problems().await;
    let scheduler = health.scheduler_view();
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

pub async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let web = state.web();
    web.health.refresh_queue_depths().await;
    web.health.refresh_from_history().await;
    let body = web.metrics.as_ref().map_or_else(String::new, |h| {
        h.run_upkeep();
        h.render()
    });
    ([("content-type", "text/plain; version=0.0.4")], body)
}

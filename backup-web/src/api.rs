//! The JSON API beside the pages, with the same sign-in (bearer tokens are
//! the usual way for scripts): runs with the runs page's filters, one run,
//! the overview's data, and triggering backups.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use backup_core::history::HistoryError;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::{
    actions::{StartError, start_backups},
    auth::{Signed, Via, csrf_ok},
    data::{self, RunQuery},
    state::AppState,
};

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "API: {what} failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; the worker's log has the details",
    )
}

/// `GET /api/runs`: the runs page's filters as query parameters; the
/// fields of `backup-cli runs list --json`, newest first.
pub async fn runs(State(state): State<AppState>, Query(query): Query<RunQuery>) -> Response {
    let web = state.web();
    let filter = match query.filter(web.ctx.settings.timezone.0, Utc::now()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match web.ctx.history.list(&filter).await {
        Ok(runs) => Json(runs).into_response(),
        Err(e) => internal("listing runs", &e),
    }
}

/// `GET /api/runs/{id}`.
pub async fn run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "no such run");
    };
    match state.web().ctx.history.get(id).await {
        Ok(run) => Json(run).into_response(),
        Err(HistoryError::NotFound(_)) => error(StatusCode::NOT_FOUND, "no such run"),
        Err(e) => internal("reading a run", &e),
    }
}

/// `GET /api/targets`: the overview's data.
pub async fn targets(State(state): State<AppState>) -> Response {
    match data::overview(state.web(), Utc::now()).await {
        Ok(o) => Json(o).into_response(),
        Err(e) => internal("the overview", &e),
    }
}

#[derive(Deserialize, Default)]
pub struct TriggerParams {
    target: Option<String>,
}

/// `POST /api/trigger/{database|media}`, optional `target` as a query
/// parameter or in a JSON body. Answers the started jobs' task ids. A
/// browser session must send its CSRF token in `X-CSRF-Token`.
pub async fn trigger(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Path(kind): Path<String>,
    Query(params): Query<TriggerParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !me.is_operator() {
        return error(
            StatusCode::FORBIDDEN,
            &format!("role {} may not trigger backups", me.role.as_str()),
        );
    }
    if me.via != Via::Token {
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !csrf_ok(&csrf, given) {
            return error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token");
        }
    }
    let from_body: TriggerParams = if body.is_empty() {
        TriggerParams::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("body: {e}")),
        }
    };
    let target = params.target.or(from_body.target);
    match start_backups(state.web(), &me, &kind, target.as_deref()).await {
        Ok(started) => (StatusCode::ACCEPTED, Json(json!({ "jobs": started }))).into_response(),
        Err(StartError::Bad(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(StartError::Failed(why)) => internal("starting a backup", &why),
    }
}

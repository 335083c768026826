//! What storage holds, per target, with each artifact's verification as
//! history recorded it. Manifests that disagree with their own key are
//! listed as damaged, never trusted.

use std::collections::HashMap;

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use backup_core::storage::Listed;
use chrono::Utc;
use maud::html;

use crate::{
    auth::Signed,
    state::AppState,
    view::{self, Chrome},
};

pub async fn artifacts(State(state): State<AppState>, Signed { me, csrf }: Signed) -> Response {
    let web = state.web();
    let tz = web.ctx.settings.timezone.0;
    let now = Utc::now();
    let listing = match web.ctx.storage.listing(None, None).await {
        Ok(l) => l,
        Err(e) => return view::internal("listing storage", &e),
    };
    // The runs that made them, for their verification state (a run may
    // have left history while its artifact is kept).
    let mut runs = HashMap::new();
    for item in &listing {
        if let Listed::Valid(m) = item
            && let Ok(run) = web.ctx.history.get(m.run_id).await
            && run.artifact.as_deref() == Some(m.artifact.as_str())
        {
            runs.insert(m.run_id, run);
        }
    }
    let mut groups: Vec<(String, Vec<&Listed>)> = Vec::new();
    for item in &listing {
        let group = match item {
            Listed::Valid(m) => format!("{} / {}", m.backup_type, m.target),
            Listed::Damaged { key, .. } => {
                let parts: Vec<&str> = key.split('/').collect();
                parts
                    .get(parts.len().saturating_sub(3)..parts.len().saturating_sub(1))
                    .map_or_else(|| "unknown".to_string(), |p| p.join(" / "))
            }
        };
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, items)) => items.push(item),
            None => groups.push((group, vec![item])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let chrome = Chrome::new(&me, &csrf, tz, "/artifacts");
    let body = html! {
        h1 { "Artifacts" }
        p.muted { "Storage: " code { (web.ctx.storage.url().to_string()) } }
        @if groups.is_empty() { p.muted { "Storage holds no artifacts yet." } }
        @for (group, items) in &groups {
            h2 { (group) }
            div.table {
                table {
                    thead { tr { th { "Artifact" } th { "Created" } th { "Size" } th { "Verified" } th { "" } } }
                    tbody {
                        @for item in items {
                            @match item {
                                Listed::Valid(m) => {
                                    @let run = runs.get(&m.run_id);
                                    tr {
                                        td.mono { a href=(format!("/runs/{}", m.run_id)) { (m.artifact.rsplit('/').next().unwrap_or(&m.artifact)) } }
                                        td { (view::when(m.created_at, tz, now)) }
                                        td { (view::bytes(Some(m.size_bytes as i64))) }
                                        td {
                                            @match run.and_then(|r| r.verify_result.as_ref().map(|v| (v, r.verified_at))) {
                                                Some((result, at)) => {
                                                    @if result == "ok" { span.badge.success { "✓ ok" } } @else if result.starts_with("ok ") { span.badge.running title=(result) { "✓ bytes only" } } @else { span.badge.failed { "✗ " (result) } }
                                                    @if let Some(at) = at { " " (view::when(at, tz, now)) }
                                                }
                                                None => { span.muted { "not verified" } }
                                            }
                                        }
                                        td {
                                            @if me.is_operator() {
                                                a href=(format!("/artifacts/download?key={}", view::url_encode(&m.artifact))) download { "Download" }
                                                @if run.is_some() {
                                                    " "
                                                    form.inline method="post" action="/actions/verify" {
                                                        input type="hidden" name="csrf" value=(csrf.0);
                                                        input type="hidden" name="run" value=(m.run_id);
                                                        button.link type="submit" { "Verify now" }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                                Listed::Damaged { key, reason } => {
                                    tr {
                                        td.mono { (key) }
                                        td colspan="4" { span.badge.failed { "✗ damaged" } " " (reason) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    view::page("Artifacts", &chrome, body).into_response()
}

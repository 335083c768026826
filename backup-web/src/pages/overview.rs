//! The overview: a tile per target, and the state of the workers.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use backup_core::{history::AuditEntry, model::BackupType};
use chrono::Utc;
use maud::{Markup, html};

use crate::{
    auth::{Csrf, Identity, Signed},
    data::{self, STRIP, TargetStatus},
    state::AppState,
    view::{self, Chrome},
};

pub async fn overview(State(state): State<AppState>, Signed { me, csrf }: Signed) -> Response {
    let web = state.web();
    let now = Utc::now();
    let tz = web.ctx.settings.timezone.0;
    let overview = match data::overview(web, now).await {
        Ok(o) => o,
        Err(e) => return view::internal("the overview", &e),
    };
    let audit = web.ctx.history.audit_entries(10).await.unwrap_or_default();
    let chrome = Chrome::new(&me, &csrf, tz, "/");
    let body = html! {
        h1 { "Overview" }
        @if !overview.scheduled_backups {
            p.notice.bad { "Scheduled backups are switched off (" code { "enabled = false" } "): no schedule fires. Manual backups still run." }
        }
        @for off in &overview.switched_off {
            @if overview.scheduled_backups {
                p.notice.bad { "Scheduled " (off) " — these schedules do not fire." }
            }
        }
        @if !overview.drift.is_empty() {
            div.notice.bad {
                "The stored schedules differ from the config; run " code { "backup-cli schedules setup" } ":"
                ul { @for line in &overview.drift { li { (line) } } }
            }
        }
        div.stats {
            div.card { "Mode: " strong { (overview.mode) } }
            @if let Some(replicas) = &overview.replicas {
                div.card title=(replicas.join(", ")) { "Workers alive: " strong { (replicas.len()) } }
            }
            @if let Some(depths) = &overview.queue_depth {
                div.card { "Queued: "
                    @for (i, (kind, n)) in depths.iter().enumerate() {
                        @if i > 0 { ", " }
                        (kind) " " strong { (n) }
                    }
                }
            }
            div.card { "Running now: " strong { (overview.running) } }
        }
        @if me.is_operator() {
            div.actions {
                @if overview.targets.iter().any(|t| t.backup_type == BackupType::Database) {
                    (trigger_form(&csrf, BackupType::Database, None, "Back up all databases now"))
                }
                @if overview.targets.iter().any(|t| t.backup_type == BackupType::Media) {
                    (trigger_form(&csrf, BackupType::Media, None, "Back up all media now"))
                }
                a href="/cleanup" { "Clean up old records…" }
            }
        }
        h2 { "Targets" }
        div.tiles id="tiles" data-live {
            @if overview.targets.is_empty() {
                p.muted { "No targets are configured: add " code { "[database_backup] databases" } " or " code { "[media_backup] paths" } "." }
            }
            @for t in &overview.targets { (tile(t, &me, &csrf, tz, now)) }
        }
        @if !audit.is_empty() {
            h2 { "Recent actions" }
            (audit_table(&audit, tz, now))
        }
    };
    view::page("Overview", &chrome, body).into_response()
}

fn trigger_form(csrf: &Csrf, backup_type: BackupType, target: Option<&str>, label: &str) -> Markup {
    html! {
        form.inline method="post" action="/actions/trigger" {
            input type="hidden" name="csrf" value=(csrf.0);
            input type="hidden" name="type" value=(backup_type.as_str());
            @if let Some(target) = target { input type="hidden" name="target" value=(target); }
            button type="submit" { (label) }
        }
    }
}

fn tile(
    t: &TargetStatus,
    me: &Identity,
    csrf: &Csrf,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) -> Markup {
    let runs_link = format!("/runs?type={}&target={}", t.backup_type.as_str(), t.target);
    html! {
        article.tile data-target=(t.target) {
            h3 {
                a href=(runs_link) { (t.target) }
                @if let Some(run) = &t.last_run { (view::badge(run.status)) } @else { span.muted { "no runs" } }
            }
            (strip(&t.recent))
            dl {
                dt { "Type" } dd { (t.backup_type.as_str()) }
                dt { "Last success" }
                dd {
                    @if let Some(run) = &t.last_success {
                        (view::when(run.completed_at.unwrap_or(run.started_at), tz, now))
                        " · " (view::bytes(run.size_bytes)) " · " (view::seconds(run.duration_seconds))
                    } @else { "never" }
                }
                dt { "Next backup" }
                dd {
                    @if let Some(at) = t.next_fire { (view::when(at, tz, now)) } @else { span.muted { "not scheduled" } }
                }
            }
            @if let Some(why) = &t.stale { p.warn { "⚠ Stale: " (why) } }
            @if me.is_operator() {
                div.actions { (trigger_form(csrf, t.backup_type, Some(&t.target), "Back up now")) }
            }
        }
    }
}

/// The last runs as a strip of squares, oldest left, coloured by status
/// (each with its status as a tooltip and title, not colour alone).
fn strip(recent: &[(i64, backup_core::model::RunStatus)]) -> Markup {
    let slots = STRIP as usize;
    let pad = slots.saturating_sub(recent.len());
    let w = 100.0 / slots as f64;
    html! {
        svg.strip viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label=(format!("last {} runs", recent.len())) {
            @for i in 0..pad {
                rect.none x=(format!("{:.2}", i as f64 * w)) y="0" width=(format!("{:.2}", w * 0.8)) height="6" {}
            }
            @for (j, (id, status)) in recent.iter().rev().enumerate() {
                rect class=(status.as_str()) x=(format!("{:.2}", (pad + j) as f64 * w)) y="0" width=(format!("{:.2}", w * 0.8)) height="6" {
                    title { "run " (id) ": " (status.as_str()) }
                }
            }
        }
    }
}

fn audit_table(entries: &[AuditEntry], tz: chrono_tz::Tz, now: chrono::DateTime<Utc>) -> Markup {
    html! {
        div.table {
            table {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Detail" } } }
                tbody {
                    @for e in entries {
                        tr { td { (view::when(e.at, tz, now)) } td { (e.actor) } td { (e.action) } td { (e.detail) } }
                    }
                }
            }
        }
    }
}

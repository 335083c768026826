//! The runs list (the reference admin's, read-only, with filters, search,
//! counts per status and keyset pages) and one run in full.

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use backup_core::{
    history::{BackupRun, HistoryError},
    model::{BackupType, RunStatus},
    storage::Manifest,
};
use chrono::Utc;
use maud::{Markup, html};

use crate::{
    auth::{Csrf, Signed},
    data::{RunQuery, cursor_text},
    state::AppState,
    view::{self, Chrome},
};

pub async fn runs(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Query(query): Query<RunQuery>,
) -> Response {
    let web = state.web();
    let settings = &web.ctx.settings;
    let tz = settings.timezone.0;
    let now = Utc::now();
    let filter = match query.filter(tz, now) {
        Ok(f) => f,
        Err(e) => return view::bad_request(&e),
    };
    let history = &web.ctx.history;
    // One more than a page: whether there is an older page.
    let mut page_filter = filter.clone();
    page_filter.limit = filter.limit + 1;
    let runs = match history.list(&page_filter).await {
        Ok(runs) => runs,
        Err(e) => return view::internal("listing runs", &e),
    };
    let more = runs.len() as i64 > filter.limit;
    // When one page holds every match (no status filter, no cursor), the
    // counts are the page's own: no second pass (a search that matches
    // little or nothing reads the rows once).
    let counts = if filter.status.is_none() && filter.before.is_none() && !more {
        RunStatus::ALL
            .iter()
            .map(|s| {
                (
                    *s,
                    runs.iter().filter(|r| r.status == *s).count() as i64,
                    false,
                )
            })
            .collect()
    } else {
        match history.status_counts(&filter).await {
            Ok(counts) => counts,
            Err(e) => return view::internal("counting runs", &e),
        }
    };
    let runs = &runs[..runs.len().min(filter.limit as usize)];
    let targets: Vec<String> = settings
        .targets(&[BackupType::Database, BackupType::Media], None)
        .map(|t| t.iter().map(|t| t.name().to_string()).collect())
        .unwrap_or_default();
    let link = |f: &dyn Fn(&mut RunQuery)| {
        let mut q = query.clone();
        q.before.clear();
        f(&mut q);
        format!("/runs?{}", serde_urlencoded(&q))
    };
    // Counts are bounded: "n+" means at least n.
    let total: i64 = counts.iter().map(|(_, n, _)| n).sum();
    let capped = counts.iter().any(|(_, _, more)| *more);
    let count = |n: i64, more: bool| if more { format!("{n}+") } else { n.to_string() };
    let chrome = Chrome::new(&me, &csrf, tz, "/runs");
    let body = html! {
        h1 { "Runs" }
        nav.chips aria-label="status" {
            a class=(if query.status.is_empty() { "on" } else { "" }) href=(link(&|q| q.status.clear())) { "all " (count(total, capped)) }
            @for (status, n, more) in &counts {
                a class=(if query.status.eq_ignore_ascii_case(status.as_str()) { "on" } else { "" })
                  href=(link(&|q| q.status = status.as_str().into())) { (view::badge(*status)) " " (count(*n, *more)) }
            }
        }
        form.filters method="get" action="/runs" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in RunStatus::ALL { option value=(s.as_str()) selected[query.status.eq_ignore_ascii_case(s.as_str())] { (s.as_str()) } }
                }
            }
            label { "Type"
                select name="type" {
                    option value="" { "any" }
                    @for t in BackupType::ALL { option value=(t.as_str()) selected[query.backup_type.eq_ignore_ascii_case(t.as_str())] { (t.as_str()) } }
                }
            }
            label { "Target"
                select name="target" {
                    option value="" { "any" }
                    @for t in &targets { option value=(t) selected[query.target == *t] { (t) } }
                }
            }
            label { "From" input type="date" name="since" value=(query.since); }
            label { "To" input type="date" name="until" value=(query.until); }
            label { "Error contains" input type="search" name="q" value=(query.q) placeholder="text in the error"; }
            button type="submit" { "Filter" }
            a href="/runs" { "Reset" }
        }
        div.table id="runs" data-live {
            @if runs.is_empty() {
                p.muted { "No runs match." }
            } @else {
                (run_table(runs, tz, now))
            }
        }
        div.pager {
            @if filter.before.is_some() { a href=(link(&|_| {})) { "← Newest" } } @else { span {} }
            @if more {
                @if let Some(last) = runs.last() {
                    a href=(format!("{}&before={}", link(&|_| {}), cursor_text(last))) rel="next" { "Older →" }
                }
            }
        }
    };
    view::page("Runs", &chrome, body).into_response()
}

fn serde_urlencoded(q: &RunQuery) -> String {
    let pairs = [
        ("status", &q.status),
        ("type", &q.backup_type),
        ("target", &q.target),
        ("since", &q.since),
        ("until", &q.until),
        ("q", &q.q),
        ("limit", &q.limit),
        ("before", &q.before),
    ];
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", view::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn run_table(runs: &[BackupRun], tz: chrono_tz::Tz, now: chrono::DateTime<Utc>) -> Markup {
    html! {
        table {
            thead { tr {
                th { "ID" } th { "Status" } th { "Type" } th { "Target" } th { "Started" }
                th.hide-narrow { "Duration" } th.hide-narrow { "Size" } th.hide-narrow { "Trigger" } th { "Error" }
            } }
            tbody {
                @for run in runs {
                    tr data-run=(run.id) data-status=(run.status.as_str()) {
                        td { a href=(format!("/runs/{}", run.id)) { (run.id) } }
                        td { (view::badge(run.status)) }
                        td { (run.backup_type.as_str()) }
                        td { (run.target) }
                        td { (view::when(run.started_at, tz, now)) }
                        td.hide-narrow { (view::seconds(run.duration_seconds)) }
                        td.hide-narrow { (view::bytes(run.size_bytes)) }
                        td.hide-narrow {
                            (run.trigger.as_str())
                            @if let Some(by) = &run.triggered_by { br; span.muted { (by) } }
                        }
                        td.error { (short(&run.error_message, 140)) }
                    }
                }
            }
        }
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        text.chars().take(max - 1).collect::<String>() + "…"
    } else {
        text.to_string()
    }
}

pub async fn run(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return view::not_found_page();
    };
    let web = state.web();
    let tz = web.ctx.settings.timezone.0;
    let now = Utc::now();
    let run = match web.ctx.history.get(id).await {
        Ok(run) => run,
        Err(HistoryError::NotFound(_)) => return view::not_found_page(),
        Err(e) => return view::internal("reading a run", &e),
    };
    let attempts = match &run.task_id {
        Some(task) => web.ctx.history.task_runs(task).await.unwrap_or_default(),
        None => Vec::new(),
    };
    // The manifest is read from storage: shown only when it agrees with
    // its own key (`Storage::manifest` checks).
    let manifest: Result<Option<Manifest>, String> = match &run.artifact {
        Some(key) => web
            .ctx
            .storage
            .manifest(key)
            .await
            .map_err(|e| e.to_string()),
        None => Ok(None),
    };
    let chrome = Chrome::new(&me, &csrf, tz, "/runs");
    let opt_time =
        |t: Option<chrono::DateTime<Utc>>| t.map_or("-".to_string(), |t| view::time(t, tz));
    let body = html! {
        h1 { "Run " (run.id) " " (view::badge(run.status)) }
        @if !run.error_message.is_empty() {
            h2 { "Error" }
            pre.error { (run.error_message) }
        }
        div.card id="run" data-live {
            dl.facts {
                dt { "Type" } dd { (run.backup_type.as_str()) }
                dt { "Target" } dd { a href=(format!("/runs?type={}&target={}", run.backup_type.as_str(), run.target)) { (run.target) } }
                dt { "Status" } dd { (view::badge(run.status)) }
                dt { "Trigger" } dd { (run.trigger.as_str()) @if let Some(by) = &run.triggered_by { " by " (by) } }
                dt { "Scheduled for" } dd { (opt_time(run.scheduled_for)) }
                dt { "Task" } dd.mono { (run.task_id.as_deref().unwrap_or("-")) }
                dt { "Attempt" } dd { (run.attempt) }
                dt { "Worker" } dd.mono { (run.worker) }
                dt { "Started" } dd { (view::time(run.started_at, tz)) " (" (view::age(run.started_at, now)) ")" }
                dt { "Completed" } dd { (opt_time(run.completed_at)) }
                dt { "Duration" } dd { (view::seconds(run.duration_seconds)) }
                dt { "Artifact" } dd.mono { (run.artifact.as_deref().unwrap_or("-")) }
                dt { "Size" } dd { (view::bytes(run.size_bytes)) @if let Some(n) = run.size_bytes { " (" (n) " bytes)" } }
                dt { "sha256" } dd.mono { (run.sha256.as_deref().unwrap_or("-")) }
                dt { "Notification" } dd { (run.notification.as_deref().unwrap_or("-")) }
                dt { "Verified" } dd { (opt_time(run.verified_at)) @if let Some(r) = &run.verify_result { " · " (r) } }
            }
        }
        @if me.is_operator() && run.artifact.is_some() && run.status == RunStatus::Success {
            div.actions {
                (run_action(&csrf, "/actions/verify", run.id, "Verify now"))
                @if run.backup_type == BackupType::Database { (run_action(&csrf, "/actions/drill", run.id, "Restore drill now")) }
                @if let Some(key) = &run.artifact {
                    a href=(format!("/artifacts/download?key={}", view::url_encode(key))) download { "Download" }
                }
            }
        }
        @if attempts.len() > 1 {
            h2 { "Attempts of this job" }
            div.table { (run_table(&attempts, tz, now)) }
        }
        @match &manifest {
            Ok(Some(m)) => {
                h2 { "Manifest" }
                div.card { dl.facts {
                    dt { "Engine" } dd { (m.engine) }
                    dt { "Format" } dd { (m.format) }
                    dt { "Compression" } dd { (m.compression) }
                    dt { "Server" } dd { (m.server_version.as_deref().unwrap_or("-")) }
                    dt { "Tool" } dd { (m.tool_version.as_deref().unwrap_or("-")) }
                    dt { "Source bytes" } dd { (view::bytes(Some(m.source_bytes as i64))) }
                    @if let Some(files) = m.files { dt { "Files" } dd { (files) } }
                    dt { "Created" } dd { (view::time(m.created_at, tz)) }
                } }
                h2 { "Restore it" }
                (restore_commands(&run, m))
            }
            Ok(None) => {
                @if run.artifact.is_some() { p.notice.bad { "The artifact is no longer in storage (deleted by retention or by hand)." } }
            }
            Err(e) => { p.notice.bad { "Its manifest cannot be trusted: " (e) } }
        }
    };
    view::page(&format!("Run {}", run.id), &chrome, body).into_response()
}

fn run_action(csrf: &Csrf, action: &str, run: i64, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf.0);
            input type="hidden" name="run" value=(run);
            button.secondary type="submit" { (label) }
        }
    }
}

/// The commands that restore this run: with this tool, and by hand from
/// the artifact file (no secret: the database is a placeholder).
fn restore_commands(run: &BackupRun, m: &Manifest) -> Markup {
    let file = m.artifact.rsplit('/').next().unwrap_or(&m.artifact);
    // Encrypted: age first, with the identity kept off the backup host.
    let (source, identity) = match &m.encryption {
        Some(_) => (
            format!("age -d -i backup-key.txt {file}"),
            " --identity backup-key.txt",
        ),
        None => (String::new(), ""),
    };
    let cat = match (m.compression.as_str(), source.is_empty()) {
        ("zstd", true) => format!("zstd -dc {file}"),
        ("gzip", true) => format!("gzip -dc {file}"),
        (_, true) => format!("cat {file}"),
        ("zstd", false) => format!("{source} | zstd -dc"),
        ("gzip", false) => format!("{source} | gzip -dc"),
        (_, false) => source.clone(),
    };
    let (tool, by_hand) = match m.engine.as_str() {
        "postgresql" => (
            format!(
                "backup-cli restore database --target {} --run {}{identity}",
                run.target, run.id
            ),
            format!("{cat} | pg_restore --clean --if-exists --no-owner -d \"$DATABASE_URL\""),
        ),
        "mysql" => (
            format!(
                "backup-cli restore database --target {} --run {}{identity}",
                run.target, run.id
            ),
            format!("{cat} | mariadb \"$DATABASE\""),
        ),
        "sqlite" => (
            format!(
                "backup-cli restore database --target {} --run {}{identity}",
                run.target, run.id
            ),
            format!("{cat} > restored.db"),
        ),
        _ => (
            format!(
                "backup-cli restore media --target {} --run {} --to ./restored{identity}",
                run.target, run.id
            ),
            format!("mkdir -p restored && {cat} | tar -xf - -C restored"),
        ),
    };
    html! {
        p { "With this tool (add " code { "--into URL" } " or " code { "--to DIR" } " to restore elsewhere):" }
        pre { (tool) }
        p { "By hand, from the artifact file (check it first: " code { (format!("sha256sum {file}")) } " must print " code.mono { (m.sha256) } "):" }
        pre { (by_hand) }
    }
}

//! What an operator runs from the dashboard: POST only, with the form's
//! CSRF token, each recorded in the audit log with who did it. Trigger a
//! backup, verify or drill a run's artifact, clean up old history (after a
//! preview), pause or resume a schedule, and download an artifact
//! (streamed from storage, never held in memory).

use axum::{
    Form,
    body::Body,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use backup_core::{
    context::Context,
    jobs::BackupJob,
    maintenance,
    model::{BackupType, Trigger, parse_target_name},
    pipeline::Progress,
    restore::{self, Scope},
    storage::ArtifactKey,
};
use chrono::Utc;
use futures_util::StreamExt as _;
use maud::html;
use serde::{Deserialize, Serialize};

use crate::{
    auth::{Csrf, Identity, Signed, Via, csrf_ok},
    state::{AppState, Web},
    view::{self, Chrome},
};

/// Refuses viewers, and forms without this browser's CSRF token: the
/// refusal, or `None` when allowed.
fn refused(me: &Identity, csrf: &Csrf, given: &str) -> Option<Response> {
    if !me.is_operator() {
        return Some(view::forbidden(&format!(
            "Your role ({}) may look, not act; ask for the operator role.",
            me.role.as_str()
        )));
    }
    if me.via != Via::Token && !csrf_ok(csrf, given) {
        return Some(view::forbidden(
            "The form expired or did not come from this dashboard; reload the page and try again.",
        ));
    }
    None
}

async fn audit(web: &Web, me: &Identity, action: &str, detail: &str) {
    if let Err(e) = web
        .ctx
        .history
        .audit(&me.actor, action, detail, Utc::now())
        .await
    {
        tracing::warn!(error = %e, action, "cannot record an action in the audit log");
    }
    tracing::info!(actor = %me.actor, action, detail, "dashboard action");
}

/// A backup started from the dashboard or the API.
#[derive(Debug, Serialize)]
pub struct Started {
    pub backup_type: BackupType,
    pub target: String,
    /// The queue task id (single-process mode: this process's task id).
    pub task_id: String,
}

/// Why starting backups failed.
pub enum StartError {
    /// The request names no such type or target.
    Bad(String),
    /// The queue did not take a job.
    Failed(String),
}

/// Starts a backup of every target of `backup_type` (or of `target`).
///
/// # Errors
///
/// [`StartError::Bad`] for an unknown type or target, before anything
/// starts.
pub async fn start_backups(
    web: &Web,
    me: &Identity,
    backup_type: &str,
    target: Option<&str>,
) -> Result<Vec<Started>, StartError> {
    let backup_type: BackupType = backup_type.parse().map_err(StartError::Bad)?;
    let target = target
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(parse_target_name)
        .transpose()
        .map_err(StartError::Bad)?;
    let targets: Vec<String> = web
        .ctx
        .settings
        .targets(&[backup_type], target.as_deref())
        .map_err(|e| StartError::Bad(e.to_string()))?
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let mut started = Vec::new();
    for name in targets {
        let job = BackupJob {
            backup_type,
            target: name.clone(),
            trigger: Trigger::Manual,
            triggered_by: Some(me.actor.clone()),
            scheduled_for: None,
            job_id: None,
        };
        let task_id = web
            .launcher
            .launch(&job)
            .await
            .map_err(|e| StartError::Failed(e.to_string()))?;
        audit(
            web,
            me,
            "trigger",
            &format!("{backup_type} backup of {name} (task {task_id})"),
        )
        .await;
        started.push(Started {
            backup_type,
            target: name,
            task_id,
        });
    }
    Ok(started)
}

#[derive(Deserialize)]
pub struct TriggerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "type")]
    backup_type: String,
    target: Option<String>,
}

pub async fn trigger(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Form(form): Form<TriggerForm>,
) -> Response {
    if let Some(refusal) = refused(&me, &csrf, &form.csrf) {
        return refusal;
    }
    match start_backups(state.web(), &me, &form.backup_type, form.target.as_deref()).await {
        Ok(started) => {
            let mut to = format!("/runs?type={}", form.backup_type.to_ascii_lowercase());
            if let [one] = started.as_slice() {
                to.push_str(&format!("&target={}", view::url_encode(&one.target)));
            }
            Redirect::to(&to).into_response()
        }
        Err(StartError::Bad(why)) => view::bad_request(&why),
        Err(StartError::Failed(why)) => view::internal("starting a backup", &why),
    }
}

#[derive(Deserialize)]
pub struct RunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    run: String,
}

/// The run a verify or drill form names, with an artifact.
async fn run_with_artifact(web: &Web, run: &str) -> Result<i64, Response> {
    let id: i64 = run
        .trim()
        .parse()
        .map_err(|_| view::bad_request("run: not a run id"))?;
    match web.ctx.history.get(id).await {
        Ok(run) if run.artifact.is_some() => Ok(id),
        Ok(_) => Err(view::bad_request("that run has no artifact")),
        Err(_) => Err(view::not_found_page()),
    }
}

pub async fn verify(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Form(form): Form<RunForm>,
) -> Response {
    on_run(&state, &me, &csrf, &form, "verify", verify_run).await
}

pub async fn drill(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Form(form): Form<RunForm>,
) -> Response {
    on_run(&state, &me, &csrf, &form, "drill", drill_run).await
}

/// Runs `work` on the form's run in the background (after the checks and
/// the audit record), and shows the run.
async fn on_run<F>(
    state: &AppState,
    me: &Identity,
    csrf: &Csrf,
    form: &RunForm,
    action: &str,
    work: fn(Context, i64) -> F,
) -> Response
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Some(refusal) = refused(me, csrf, &form.csrf) {
        return refusal;
    }
    let web = state.web();
    let id = match run_with_artifact(web, &form.run).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    audit(web, me, action, &format!("run {id}")).await;
    tokio::spawn(work(web.ctx.clone(), id));
    Redirect::to(&format!("/runs/{id}")).into_response()
}

/// Verifies the run's artifact; the outcome is kept on the run.
async fn verify_run(ctx: Context, id: i64) {
    match restore::verify(&ctx, &Scope::Run(id), None).await {
        Ok(results) => {
            for r in results {
                tracing::info!(run = id, ok = r.ok, detail = %r.detail, "verification from the dashboard");
            }
        }
        Err(e) => tracing::warn!(run = id, error = %e, "verification from the dashboard failed"),
    }
}

/// Verifies the run's artifact, then drills its restore into the scratch
/// database; the drill is recorded beside the restores
/// (`backup-cli restore list`).
async fn drill_run(ctx: Context, id: i64) {
    let results = match restore::verify(&ctx, &Scope::Run(id), None).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(run = id, error = %e, "drill from the dashboard: verification failed");
            return;
        }
    };
    for result in &results {
        match restore::drill_verified(&ctx, result, None, Progress::default()).await {
            Ok(Some(drill)) => tracing::info!(
                run = id,
                tables = drill.tables.len(),
                error = drill.report.error.as_ref().map(ToString::to_string),
                "restore drill from the dashboard finished"
            ),
            Ok(None) => tracing::warn!(
                run = id,
                "restore drill from the dashboard: no scratch database is configured for this \
                 engine (verify_scratch)"
            ),
            Err(e) => {
                tracing::warn!(run = id, error = %e, "restore drill from the dashboard failed")
            }
        }
    }
}

#[derive(Deserialize)]
pub struct CleanupQuery {
    done: Option<String>,
}

pub async fn cleanup_preview(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Query(q): Query<CleanupQuery>,
) -> Response {
    let web = state.web();
    let tz = web.ctx.settings.timezone.0;
    let days = web.ctx.settings.history_retention_days;
    let plan = match maintenance::plan_history_cleanup(&web.ctx.history, days, Utc::now()).await {
        Ok(p) => p,
        Err(e) => return view::internal("planning a cleanup", &e),
    };
    // After a cleanup, what this user's last one did, from the audit log
    // (never from the address, which anyone can write).
    let done = match q.done {
        Some(_) => web
            .ctx
            .history
            .audit_entries(20)
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.action == "cleanup" && e.actor == me.actor),
        None => None,
    };
    let chrome = Chrome::new(&me, &csrf, tz, "/");
    let body = html! {
        h1 { "Clean up old backup records" }
        @if let Some(done) = &done {
            p.notice id="cleanup-done" { "Deleted " (done.detail) " " (view::when(done.at, tz, Utc::now())) "." }
        }
        p id="cleanup-preview" {
            strong { (plan.runs.len()) } " run record(s) started before " (view::time(plan.cutoff, tz))
            " (older than " code { "history_retention_days" } " = " (days) ") would be deleted. "
            "Artifacts in storage are not touched (retention handles them)."
        }
        @if me.is_operator() && !plan.runs.is_empty() {
            form method="post" action="/actions/cleanup" {
                input type="hidden" name="csrf" value=(csrf.0);
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" { "Delete " (plan.runs.len()) " record(s)" }
            }
        }
        p { a href="/" { "Back to the overview" } }
    };
    view::page("Clean up", &chrome, body).into_response()
}

#[derive(Deserialize)]
pub struct CleanupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

pub async fn cleanup(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Form(form): Form<CleanupForm>,
) -> Response {
    if let Some(refusal) = refused(&me, &csrf, &form.csrf) {
        return refusal;
    }
    if form.confirm != "yes" {
        return Redirect::to("/cleanup").into_response();
    }
    let web = state.web();
    // Always the configured age, as the preview showed: never a number
    // from the form.
    let days = web.ctx.settings.history_retention_days;
    let history = &web.ctx.history;
    let deleted = match maintenance::plan_history_cleanup(history, days, Utc::now()).await {
        Ok(plan) => maintenance::apply_history_cleanup(history, &plan).await,
        Err(e) => Err(e),
    };
    match deleted {
        Ok(n) => {
            audit(
                web,
                &me,
                "cleanup",
                &format!("{n} run record(s) older than {days} days"),
            )
            .await;
            Redirect::to("/cleanup?done").into_response()
        }
        Err(e) => view::internal("cleaning up history", &e),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn pause(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    pause_or_resume(&state, &me, &csrf, &name, &form.csrf, true).await
}

pub async fn resume(
    State(state): State<AppState>,
    Signed { me, csrf }: Signed,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    pause_or_resume(&state, &me, &csrf, &name, &form.csrf, false).await
}

async fn pause_or_resume(
    state: &AppState,
    me: &Identity,
    csrf: &Csrf,
    name: &str,
    given: &str,
    pause: bool,
) -> Response {
    if let Some(refusal) = refused(me, csrf, given) {
        return refusal;
    }
    let web = state.web();
    let history = &web.ctx.history;
    let now = Utc::now();
    let changed = if pause {
        history.pause_schedule(name, &me.actor, now).await
    } else {
        history.resume_schedule(name, now).await
    };
    match changed {
        Ok(true) => {
            let action = if pause { "pause" } else { "resume" };
            audit(web, me, action, &format!("schedule {name}")).await;
            Redirect::to("/schedules").into_response()
        }
        // Already in that state (another operator, another tab), or gone.
        Ok(false) => match history.schedules().await {
            Ok(all) if all.iter().any(|s| s.schedule.name == name) => {
                Redirect::to("/schedules").into_response()
            }
            Ok(_) => view::not_found_page(),
            Err(e) => view::internal("reading schedules", &e),
        },
        Err(e) => view::internal("pausing a schedule", &e),
    }
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    #[serde(default)]
    key: String,
}

/// Streams an artifact. The key is checked against what storage itself
/// vouches for: it must parse as an artifact key and have a manifest that
/// agrees with it; anything else is "not found".
pub async fn download(
    State(state): State<AppState>,
    Signed { me, .. }: Signed,
    Query(q): Query<DownloadQuery>,
) -> Response {
    if !me.is_operator() {
        return view::forbidden(&format!(
            "Your role ({}) may look, not download artifacts.",
            me.role.as_str()
        ));
    }
    let web = state.web();
    if ArtifactKey::parse(&q.key).is_err() {
        return view::not_found_page();
    }
    let manifest = match web.ctx.storage.manifest(&q.key).await {
        Ok(Some(m)) => m,
        Ok(None) | Err(_) => return view::not_found_page(),
    };
    let stream = match web.ctx.storage.read(&manifest.artifact).await {
        Ok(s) => s,
        Err(e) => return view::internal("reading an artifact", &e),
    };
    audit(web, &me, "download", &manifest.artifact).await;
    let file = manifest
        .artifact
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .to_string();
    let body = Body::from_stream(stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
            (header::CONTENT_LENGTH, manifest.size_bytes.to_string()),
        ],
        body,
    )
        .into_response()
}

//! The stored schedules: cron, zone, targets, last and next fires, drift
//! from the config, and pause or resume (runtime state in history; the
//! config stays the source of cron expressions and targets).

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use backup_core::{history::RunFilter, schedule::plan};
use chrono::Utc;
use maud::html;

use crate::{
    auth::Signed,
    state::AppState,
    view::{self, Chrome},
};

pub async fn schedules(State(state): State<AppState>, Signed { me, csrf }: Signed) -> Response {
    let web = state.web();
    let settings = &web.ctx.settings;
    let tz = settings.timezone.0;
    let now = Utc::now();
    let stored = match web.ctx.history.schedules().await {
        Ok(s) => s,
        Err(e) => return view::internal("reading schedules", &e),
    };
    let drift = plan::drift(settings, &stored);
    let mut last_runs = Vec::new();
    for s in &stored {
        let last = web
            .ctx
            .history
            .list(&RunFilter {
                backup_type: Some(s.schedule.backup_type),
                limit: 1,
                ..RunFilter::default()
            })
            .await
            .ok()
            .and_then(|r| r.into_iter().next());
        last_runs.push(last);
    }
    let chrome = Chrome::new(&me, &csrf, tz, "/schedules");
    let body = html! {
        h1 { "Schedules" }
        @if !drift.is_empty() {
            div.notice.bad {
                "The stored schedules differ from the config; run " code { "backup-cli schedules setup" } ":"
                ul { @for line in &drift { li { (line) } } }
            }
        }
        @if stored.is_empty() {
            p.muted { "No schedules are stored. Run " code { "backup-cli schedules setup" } " to store the config's." }
        }
        div.tiles {
            @for (s, last) in stored.iter().zip(&last_runs) {
                @let off = s.off(settings);
                article.tile data-schedule=(s.schedule.name) {
                    h3 {
                        span { (s.schedule.name) }
                        @if s.paused.is_some() { span.badge.failed { "⏸ paused" } }
                        @else if off.is_some() { span.badge.failed { "off" } }
                        @else { span.badge.success { "▶ active" } }
                    }
                    dl {
                        dt { "Type" } dd { (s.schedule.backup_type.as_str()) }
                        dt { "Cron" } dd { code { (s.schedule.cron.as_str()) } }
                        dt { "Timezone" } dd { (s.schedule.timezone.0.name()) }
                        dt { "Targets" } dd { (s.schedule.targets.join(", ")) }
                        dt { "Last fire" } dd { @if let Some(at) = s.last_fire_at { (view::when(at, tz, now)) } @else { "never" } }
                        dt { "Last run" } dd {
                            @if let Some(run) = last {
                                a href=(format!("/runs/{}", run.id)) { (run.target) } " " (view::badge(run.status)) " " (view::when(run.started_at, tz, now))
                            } @else { "none" }
                        }
                        @if let Some(why) = &off { dt { "Not firing" } dd.warn { (why) } }
                    }
                    @if off.is_none() {
                        p.muted { "Next fires:" }
                        ol { @for at in s.schedule.upcoming(now, 5) { li { (view::time(at, tz)) " (" (view::age(at, now)) ")" } } }
                    }
                    @if me.is_operator() {
                        div.actions {
                            @if s.paused.is_some() {
                                form.inline method="post" action=(format!("/schedules/{}/resume", s.schedule.name)) {
                                    input type="hidden" name="csrf" value=(csrf.0);
                                    button type="submit" { "Resume" }
                                }
                            } @else {
                                form.inline method="post" action=(format!("/schedules/{}/pause", s.schedule.name)) {
                                    input type="hidden" name="csrf" value=(csrf.0);
                                    button.secondary type="submit" { "Pause" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    view::page("Schedules", &chrome, body).into_response()
}

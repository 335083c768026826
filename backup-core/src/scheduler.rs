//! The cron side of the worker: turns the stored schedules into jobs at their
//! fire times, once per fire, and catches up the latest fire missed while no
//! worker ran. Every replica runs it; a [`Dispatch`] makes the enqueue
//! idempotent (a Redis idempotency key, or a claim in history in
//! single-process mode). What is due is decided in [`fire`]; where it goes,
//! in [`dispatch`].

pub mod dispatch;
pub mod fire;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

pub use self::{
    dispatch::{Dispatch, LocalDispatch, RedisDispatch},
    fire::{CatchUp, Fire, catch_up, due},
};
use crate::{
    Error,
    config::Settings,
    context::Context,
    health::Health,
    jobs::payload::{Chore, MaintenanceJob},
    maintenance,
    schedule::{
        cron::CronSchedule,
        plan::{self, StoredSchedule},
    },
};

/// How often stored schedules are re-read: changes made by `schedules
/// setup`/`remove` reach running workers within this.
pub const RELOAD: Duration = Duration::from_secs(10);

/// How often lost runs (rows of dead processes) are looked for.
const REPAIR: Duration = Duration::from_secs(60);

/// The longest sleep between checks, so that a reload or shutdown is never
/// far away.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Runs the cron side until `shutdown` turns true, telling `health` what it
/// loaded and how far it got.
pub async fn run<D: Dispatch>(
    ctx: Context,
    dispatch: D,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
) {
    // Bounded at load; saturates rather than panics all the same.
    let window = i64::try_from(ctx.settings.worker.catch_up_window_hours)
        .ok()
        .and_then(TimeDelta::try_hours)
        .unwrap_or(TimeDelta::MAX);
    let maintenance = ctx.settings.worker.maintenance_schedule.clone();
    let verify = ctx.settings.verify_schedule.clone();
    let tz = ctx.settings.timezone.0;
    // What is stored, and of it what fires (not switched off).
    let mut loaded: Option<Vec<StoredSchedule>> = None;
    let mut schedules: Option<Vec<StoredSchedule>> = None;
    let mut reload_at = tokio::time::Instant::now();
    let mut repair_at = tokio::time::Instant::now();
    let mut cursor = Utc::now();
    loop {
        let now_instant = tokio::time::Instant::now();
        if now_instant >= reload_at {
            reload_at = now_instant + RELOAD;
            match ctx.history.schedules().await {
                Ok(stored) => {
                    let changed = loaded.as_ref().map(|s| names(s)) != Some(names(&stored));
                    // Switched-off schedules are reported, never fired.
                    let firing: Vec<StoredSchedule> = stored
                        .iter()
                        .filter(|s| {
                            s.paused.is_none()
                                && ctx.settings.scheduled_off(s.schedule.backup_type).is_none()
                        })
                        .cloned()
                        .collect();
                    if loaded.is_none() {
                        let now = Utc::now();
                        tracing::info!(schedules = stored.len(), "schedules loaded");
                        announce(&ctx.settings, &stored);
                        catch_up_now(&dispatch, &ctx, &firing, now, window).await;
                        cursor = now;
                    } else if changed {
                        tracing::info!(schedules = ?names(&stored), "schedules changed");
                        announce(&ctx.settings, &stored);
                    }
                    health.schedules_loaded(&ctx.settings, &stored);
                    loaded = Some(stored);
                    schedules = Some(firing);
                }
                Err(e) => tracing::error!(error = %e, "cannot read schedules; retrying"),
            }
        }
        if now_instant >= repair_at {
            repair_at = now_instant + REPAIR;
            if let Err(e) = maintenance::repair_lost_runs(&ctx, Utc::now()).await {
                tracing::warn!(error = %e, "cannot look for lost runs");
            }
        }
        let now = Utc::now();
        if let Some(list) = &schedules {
            let previous = cursor;
            cursor = fire_due(&dispatch, &ctx, list, cursor, now).await;
            health.fires_checked(cursor);
            let chores = [
                (Chore::Maintenance, Some(&maintenance)),
                (Chore::Verify, verify.as_ref()),
            ];
            for (chore, cron) in chores {
                let Some(cron) = cron else { continue };
                for at in cron.fires_between(&tz, previous, cursor) {
                    let job = MaintenanceJob {
                        scheduled_for: at,
                        chore,
                    };
                    match dispatch.maintenance(job).await {
                        Ok(true) => {
                            tracing::info!(fire = %at, chore = chore.as_str(), "chore enqueued")
                        }
                        Ok(false) => {}
                        Err(e) if dispatch.is_down() => {
                            tracing::debug!(error = %e, chore = chore.as_str(), "cannot enqueue the chore")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, chore = chore.as_str(), "cannot enqueue the chore")
                        }
                    }
                }
            }
        }
        let sleep = next_wake(
            schedules.as_deref(),
            &maintenance,
            verify.as_ref(),
            &tz,
            cursor,
        );
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            tracing::info!("scheduler stopped");
            return;
        }
    }
}

fn names(list: &[StoredSchedule]) -> Vec<(String, String, bool, bool, Vec<String>)> {
    list.iter()
        .map(|s| {
            (
                s.schedule.name.clone(),
                s.schedule.cron.as_str().to_string(),
                s.schedule.enabled,
                s.paused.is_some(),
                s.schedule.targets.clone(),
            )
        })
        .collect()
}

/// Logs, at start-up and when the stored schedules change, what does not
/// fire and why, and how the stored schedules differ from the config.
fn announce(settings: &Settings, stored: &[StoredSchedule]) {
    if !settings.enabled {
        tracing::warn!(
            "scheduled backups are switched off (enabled = false): no schedule fires; \
             `backup-cli backup` and `backup-cli trigger` still run"
        );
    } else {
        for s in stored {
            if let Some(why) = settings.scheduled_off(s.schedule.backup_type) {
                tracing::warn!(schedule = %s.schedule.name, "{} backups are switched off ({why}): this schedule does not fire", s.schedule.backup_type);
            } else if let Some(pause) = &s.paused {
                tracing::warn!(schedule = %s.schedule.name, paused_by = %pause.by, paused_at = %pause.at, "this schedule is paused: it does not fire until it is resumed");
            }
        }
    }
    let drift = plan::drift(settings, stored);
    if !drift.is_empty() {
        tracing::warn!(
            drift = ?drift,
            "the stored schedules differ from the config; run `backup-cli schedules setup` to apply it"
        );
    }
}

/// Dispatches the fires in `(cursor, now]`; returns the new cursor. A fire
/// whose dispatch failed (Redis away) stops the pass: the cursor stays just
/// before it, so it is tried again on the next pass.
async fn fire_due<D: Dispatch>(
    dispatch: &D,
    ctx: &Context,
    schedules: &[StoredSchedule],
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    for fire in due(schedules, cursor, now) {
        if let Err(e) = dispatch_fire(dispatch, ctx, &fire).await {
            if dispatch.is_down() {
                tracing::debug!(schedule = %fire.schedule, fire = %fire.at, error = %e, "cannot enqueue a scheduled backup; will retry");
            } else {
                tracing::error!(schedule = %fire.schedule, fire = %fire.at, error = %e, "cannot enqueue a scheduled backup; will retry");
            }
            return fire.at - TimeDelta::nanoseconds(1);
        }
    }
    now
}

async fn dispatch_fire<D: Dispatch>(dispatch: &D, ctx: &Context, fire: &Fire) -> Result<(), Error> {
    for job in &fire.jobs {
        let fresh = dispatch.backup(&fire.schedule, job.clone()).await?;
        if fresh {
            tracing::info!(schedule = %fire.schedule, target = %job.target, fire = %fire.at, trigger = %job.trigger, "backup job enqueued");
        } else {
            tracing::debug!(schedule = %fire.schedule, target = %job.target, fire = %fire.at, "fire already enqueued by another worker");
        }
    }
    ctx.history
        .advance_schedule(&fire.schedule, fire.at)
        .await?;
    Ok(())
}

async fn catch_up_now<D: Dispatch>(
    dispatch: &D,
    ctx: &Context,
    schedules: &[StoredSchedule],
    now: DateTime<Utc>,
    window: TimeDelta,
) {
    let plan = catch_up(schedules, now, window);
    for (schedule, at) in &plan.skipped {
        tracing::warn!(schedule = %schedule, missed = %at, window_hours = window.num_hours(),
            "fire times older than the catch-up window were missed and are skipped");
    }
    for fire in &plan.run {
        tracing::info!(schedule = %fire.schedule, missed = %fire.at, "catching up a missed fire");
        if let Err(e) = dispatch_fire(dispatch, ctx, fire).await {
            tracing::error!(schedule = %fire.schedule, error = %e, "cannot enqueue a catch-up backup");
        }
    }
}

/// How long to sleep: until the next fire, at most [`MAX_SLEEP`].
fn next_wake(
    schedules: Option<&[StoredSchedule]>,
    maintenance: &CronSchedule,
    verify: Option<&CronSchedule>,
    tz: &chrono_tz::Tz,
    cursor: DateTime<Utc>,
) -> Duration {
    let mut next = maintenance.next_after(tz, cursor);
    if let Some(at) = verify.and_then(|v| v.next_after(tz, cursor)) {
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    for s in schedules
        .unwrap_or_default()
        .iter()
        .filter(|s| s.schedule.enabled)
    {
        if let Some(at) = s.schedule.cron.next_after(&s.schedule.timezone.0, cursor) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    next.and_then(|at| (at - Utc::now()).to_std().ok())
        .map_or(Duration::ZERO, |d| d.min(MAX_SLEEP))
        .max(Duration::from_millis(5))
}

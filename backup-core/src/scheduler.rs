//! The cron side of the worker: turns the stored schedules into jobs at their
//! fire times, once per fire, and catches up the latest fire missed while no
//! worker ran. Every replica runs it; [`Dispatch`] makes the enqueue
//! idempotent (a Redis idempotency key, or a claim in history in
//! single-process mode).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use crate::{
    Error,
    backup::Context,
    history::Trigger,
    jobs::{self, BackupJob, Chore, MaintenanceJob},
    schedule::{CronSchedule, StoredSchedule},
};

/// How often stored schedules are re-read: changes made by `schedules
/// setup`/`remove` reach running workers within this.
pub const RELOAD: Duration = Duration::from_secs(10);

/// How often lost runs (rows of dead processes) are looked for.
const REPAIR: Duration = Duration::from_secs(60);

/// The longest sleep between checks, so that a reload or shutdown is never
/// far away.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// One fire of one schedule: a job per target.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    /// Schedule name.
    pub schedule: String,
    /// The fire time.
    pub at: DateTime<Utc>,
    /// One job per target.
    pub jobs: Vec<BackupJob>,
}

fn fire(s: &StoredSchedule, at: DateTime<Utc>, trigger: Trigger) -> Fire {
    Fire {
        schedule: s.schedule.name.clone(),
        at,
        jobs: s
            .schedule
            .targets
            .iter()
            .map(|target| BackupJob {
                backup_type: s.schedule.backup_type,
                target: target.clone(),
                trigger,
                scheduled_for: Some(at),
            })
            .collect(),
    }
}

/// The fires of enabled schedules in `(since, now]`, oldest first. A
/// schedule never fires for a time before its last change.
pub fn due(schedules: &[StoredSchedule], since: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Fire> {
    let mut fires: Vec<Fire> = schedules
        .iter()
        .filter(|s| s.schedule.enabled)
        .flat_map(|s| {
            let from = since.max(s.updated_at);
            s.schedule
                .cron
                .fires_between(&s.schedule.timezone.0, from, now)
                .into_iter()
                .map(move |at| fire(s, at, Trigger::Schedule))
        })
        .collect();
    fires.sort_by_key(|f| f.at);
    fires
}

/// What to do at start-up about fires missed while no worker ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatchUp {
    /// The latest missed fire of each schedule, within the window: run once.
    pub run: Vec<Fire>,
    /// Schedules with misses older than the window, and the oldest such
    /// miss: logged, never replayed.
    pub skipped: Vec<(String, DateTime<Utc>)>,
}

/// Decides the catch-up at `now`: per enabled schedule, the latest fire
/// after both its last recorded fire and its last change, if it is at most
/// `window` old.
pub fn catch_up(schedules: &[StoredSchedule], now: DateTime<Utc>, window: TimeDelta) -> CatchUp {
    let mut plan = CatchUp::default();
    for s in schedules.iter().filter(|s| s.schedule.enabled) {
        let tz = &s.schedule.timezone.0;
        let from = s.last_fire_at.map_or(s.updated_at, |l| l.max(s.updated_at));
        let horizon = now - window;
        if let Some(latest) = s
            .schedule
            .cron
            .fires_between(tz, from.max(horizon), now)
            .pop()
        {
            plan.run.push(fire(s, latest, Trigger::CatchUp));
        }
        let older_miss = (from < horizon)
            .then(|| s.schedule.cron.next_after(tz, from))
            .flatten()
            .filter(|t| *t <= horizon);
        if let Some(old) = older_miss {
            plan.skipped.push((s.schedule.name.clone(), old));
        }
    }
    plan
}

/// Where fired jobs go.
pub trait Dispatch: Send + Sync {
    /// Enqueues (or starts) a scheduled backup job; `Ok(false)` when this
    /// fire was already taken by another replica.
    fn backup(
        &self,
        schedule: &str,
        job: BackupJob,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Enqueues (or starts) the maintenance job; `Ok(false)` when taken.
    fn maintenance(&self, job: MaintenanceJob) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// Runs the cron side until `shutdown` turns true.
pub async fn run<D: Dispatch>(ctx: Context, dispatch: D, mut shutdown: watch::Receiver<bool>) {
    let window = TimeDelta::hours(ctx.settings.worker.catch_up_window_hours as i64);
    let maintenance = ctx.settings.worker.maintenance_schedule.clone();
    let verify = ctx.settings.verify_schedule.clone();
    let tz = ctx.settings.timezone.0;
    let mut schedules: Option<Vec<StoredSchedule>> = None;
    let mut reload_at = tokio::time::Instant::now();
    let mut repair_at = tokio::time::Instant::now();
    let mut cursor = Utc::now();
    loop {
        let now_instant = tokio::time::Instant::now();
        if now_instant >= reload_at {
            reload_at = now_instant + RELOAD;
            match ctx.history.schedules().await {
                Ok(fresh) => {
                    if schedules.is_none() {
                        let now = Utc::now();
                        tracing::info!(schedules = fresh.len(), "schedules loaded");
                        catch_up_now(&dispatch, &ctx, &fresh, now, window).await;
                        cursor = now;
                    } else if schedules.as_ref().map(|s| names(s)) != Some(names(&fresh)) {
                        tracing::info!(schedules = ?names(&fresh), "schedules changed");
                    }
                    schedules = Some(fresh);
                }
                Err(e) => tracing::error!(error = %e, "cannot read schedules; retrying"),
            }
        }
        if now_instant >= repair_at {
            repair_at = now_instant + REPAIR;
            if let Err(e) = jobs::repair_lost_runs(&ctx, Utc::now()).await {
                tracing::warn!(error = %e, "cannot look for lost runs");
            }
        }
        let now = Utc::now();
        if let Some(list) = &schedules {
            let previous = cursor;
            cursor = fire_due(&dispatch, &ctx, list, cursor, now).await;
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

fn names(list: &[StoredSchedule]) -> Vec<(String, String, bool)> {
    list.iter()
        .map(|s| {
            (
                s.schedule.name.clone(),
                s.schedule.cron.as_str().to_string(),
                s.schedule.enabled,
            )
        })
        .collect()
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
            tracing::error!(schedule = %fire.schedule, fire = %fire.at, error = %e, "cannot enqueue a scheduled backup; will retry");
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

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::{config::Timezone, history::BackupType, schedule::Schedule};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn stored(cron: &str, updated: &str, last: Option<&str>) -> StoredSchedule {
        StoredSchedule {
            schedule: Schedule {
                name: "database".into(),
                backup_type: BackupType::Database,
                targets: vec!["app".into(), "crm".into()],
                cron: cron.parse().expect("cron"),
                timezone: Timezone(chrono_tz::UTC),
                enabled: true,
            },
            last_fire_at: last.map(at),
            created_at: at(updated),
            updated_at: at(updated),
        }
    }

    #[test]
    fn due_gives_one_job_per_target_per_fire_and_never_before_a_change() {
        let s = stored("0 * * * *", "2026-11-26T10:30:00Z", None);
        let fires = due(&[s], at("2026-11-26T09:00:00Z"), at("2026-11-26T12:00:00Z"));
        let times: Vec<_> = fires.iter().map(|f| f.at).collect();
        assert_eq!(
            times,
            vec![at("2026-11-26T11:00:00Z"), at("2026-11-26T12:00:00Z")]
        );
        let targets: Vec<_> = fires[0].jobs.iter().map(|j| j.target.as_str()).collect();
        assert_eq!(targets, ["app", "crm"]);
        assert!(fires[0].jobs.iter().all(|j| j.trigger == Trigger::Schedule
            && j.scheduled_for == Some(at("2026-11-26T11:00:00Z"))));
    }

    #[test]
    fn disabled_schedules_never_fire() {
        let mut s = stored("* * * * *", "2026-11-26T10:00:00Z", None);
        s.schedule.enabled = false;
        assert!(
            due(
                &[s.clone()],
                at("2026-11-26T10:00:00Z"),
                at("2026-11-26T11:00:00Z")
            )
            .is_empty()
        );
        assert_eq!(
            catch_up(&[s], at("2026-11-26T11:00:00Z"), TimeDelta::hours(24)),
            CatchUp::default()
        );
    }

    #[test]
    fn catch_up_runs_only_the_latest_miss_within_the_window() {
        // Daily at 02:00; the last fire enqueued was two days ago.
        let s = stored(
            "0 2 * * *",
            "2026-11-01T00:00:00Z",
            Some("2026-11-24T02:00:00Z"),
        );
        let plan = catch_up(&[s], at("2026-11-26T09:00:00Z"), TimeDelta::hours(24));
        assert_eq!(plan.run.len(), 1);
        assert_eq!(plan.run[0].at, at("2026-11-26T02:00:00Z"));
        assert!(
            plan.run[0]
                .jobs
                .iter()
                .all(|j| j.trigger == Trigger::CatchUp)
        );
        // The 25th's fire is older than the window: skipped, reported.
        assert_eq!(
            plan.skipped,
            vec![("database".to_string(), at("2026-11-25T02:00:00Z"))]
        );
    }

    #[test]
    fn catch_up_skips_misses_older_than_the_window() {
        let s = stored(
            "0 2 * * *",
            "2026-11-01T00:00:00Z",
            Some("2026-11-20T02:00:00Z"),
        );
        let plan = catch_up(&[s], at("2026-11-26T01:00:00Z"), TimeDelta::hours(12));
        assert!(plan.run.is_empty());
        assert_eq!(
            plan.skipped,
            vec![("database".to_string(), at("2026-11-21T02:00:00Z"))]
        );
    }

    #[test]
    fn nothing_to_catch_up_when_the_last_fire_was_enqueued() {
        let s = stored(
            "0 2 * * *",
            "2026-11-01T00:00:00Z",
            Some("2026-11-26T02:00:00Z"),
        );
        assert_eq!(
            catch_up(&[s], at("2026-11-26T09:00:00Z"), TimeDelta::hours(24)),
            CatchUp::default()
        );
        // A schedule created after its last fire time has nothing to catch up.
        let s = stored("0 2 * * *", "2026-11-26T03:00:00Z", None);
        assert_eq!(
            catch_up(&[s], at("2026-11-26T09:00:00Z"), TimeDelta::hours(24)),
            CatchUp::default()
        );
    }
}

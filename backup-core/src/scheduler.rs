//! The cron side of the worker: turns the stored schedules into jobs at their
//! fire times, once per fire, and catches up the latest fire missed while no
//! worker ran. Every replica runs it; a [`Dispatch`] makes the enqueue
//! idempotent (a Redis idempotency key, or a claim in history in
//! single-process mode).
//!
//! The firing is apalis-cron's: each stored schedule that fires, and each
//! chore of the config, is a cron source ([`source`]), an apalis worker on a
//! `CronScheduler` driven by our cron semantics, whose handler dispatches the
//! fire. This module keeps the sources in step with the stored schedules
//! (re-read every [`RELOAD`]), catches up at start-up, restarts a source
//! whose timer failed or fell behind, and reports how far they got. What is
//! due at start-up is decided in [`fire`]; where it goes, in [`dispatch`].

pub mod dispatch;
pub mod fire;
pub mod source;

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

pub use self::{
    dispatch::{Dispatch, LocalDispatch, RedisDispatch},
    fire::{CatchUp, Fire, catch_up},
    source::{Fires, Source, dispatch_fire},
};
use crate::{
    config::Settings,
    context::{self, Context},
    health::Health,
    jobs::payload::Chore,
    maintenance,
    schedule::plan::{self, StoredSchedule},
};

/// How often stored schedules are re-read: changes made by `schedules
/// setup`/`remove` (or a pause) reach running workers within this.
pub const RELOAD: Duration = Duration::from_secs(10);

/// How often lost runs (rows of dead processes) are looked for.
const REPAIR: Duration = Duration::from_secs(60);

/// How often the sources are looked over (ended, or fallen behind) and
/// their progress reported.
const LOOK: Duration = Duration::from_secs(1);

/// A source whose timer is this late for its fire (the clock jumped, or the
/// host was suspended) is restarted, which dispatches the fire at once.
const OVERDUE: TimeDelta = TimeDelta::seconds(2);

/// Runs the cron side until `shutdown` turns true, telling `health` what it
/// loaded and how far it got.
pub async fn run<D: Dispatch + Clone + 'static>(
    ctx: Context,
    dispatch: D,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sources = Sources {
        ctx: ctx.clone(),
        dispatch,
        base: context::worker_id().replace(':', "-"),
        running: BTreeMap::new(),
        started: 0,
    };
    let now = Utc::now();
    let tz = ctx.settings.timezone.0;
    let chores = [
        (
            Chore::Maintenance,
            Some(&ctx.settings.worker.maintenance_schedule),
        ),
        (Chore::Verify, ctx.settings.verify_schedule.as_ref()),
    ];
    for (chore, cron) in chores {
        if let Some(cron) = cron {
            sources.start(Fires::Chore(chore, cron.clone(), tz), now);
        }
    }
    let mut loaded: Option<Vec<StoredSchedule>> = None;
    let mut reload = tokio::time::interval(RELOAD);
    let mut look = tokio::time::interval(LOOK);
    let mut repair = tokio::time::interval(REPAIR);
    for timer in [&mut reload, &mut look, &mut repair] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = reload.tick() => {
                if let Some(stored) = reload_schedules(&mut sources, &health, loaded.as_deref()).await {
                    loaded = Some(stored);
                }
            }
            _ = look.tick() => {
                let now = Utc::now();
                let checked = sources.look_over(now).await;
                if loaded.is_some() {
                    health.fires_checked(checked);
                }
            }
            _ = repair.tick() => {
                if let Err(e) = maintenance::repair_lost_runs(&ctx, Utc::now()).await {
                    tracing::warn!(error = %e, "cannot look for lost runs");
                }
            }
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            sources.stop_all().await;
            tracing::info!("scheduler stopped");
            return;
        }
    }
}

/// Re-reads the stored schedules and brings the sources in step; returns
/// them, or `None` when history cannot be read. The first load catches up.
async fn reload_schedules<D: Dispatch + Clone + 'static>(
    sources: &mut Sources<D>,
    health: &Health,
    loaded: Option<&[StoredSchedule]>,
) -> Option<Vec<StoredSchedule>> {
    let ctx = sources.ctx.clone();
    let stored = match ctx.history.schedules().await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %e, "cannot read schedules; retrying");
            return None;
        }
    };
    // Switched-off schedules are reported, never fired.
    let firing: Vec<StoredSchedule> = stored
        .iter()
        .filter(|s| {
            s.schedule.enabled
                && s.paused.is_none()
                && ctx.settings.scheduled_off(s.schedule.backup_type).is_none()
        })
        .cloned()
        .collect();
    let now = Utc::now();
    match loaded {
        None => {
            tracing::info!(schedules = stored.len(), "schedules loaded");
            announce(&ctx.settings, &stored);
            let window = i64::try_from(ctx.settings.worker.catch_up_window_hours)
                .ok()
                .and_then(TimeDelta::try_hours)
                .unwrap_or(TimeDelta::MAX);
            catch_up_now(&sources.dispatch, &ctx, &firing, now, window).await;
        }
        Some(before) if names(before) != names(&stored) => {
            tracing::info!(schedules = ?names(&stored), "schedules changed");
            announce(&ctx.settings, &stored);
        }
        Some(_) => {}
    }
    sources.follow(&firing, now).await;
    health.schedules_loaded(&ctx.settings, &stored);
    Some(stored)
}

/// The running sources, by name.
struct Sources<D> {
    ctx: Context,
    dispatch: D,
    /// This process's worker id, for the sources' worker names.
    base: String,
    running: BTreeMap<String, Source>,
    /// Sources started so far (each worker name is new).
    started: u64,
}

impl<D: Dispatch + Clone + 'static> Sources<D> {
    /// Starts a source for `fires`, firing after `after`.
    fn start(&mut self, fires: Fires, after: DateTime<Utc>) {
        self.started += 1;
        let name = fires.name();
        let worker = format!(
            "{}:cron:{}:{}",
            self.base,
            name.replace(' ', "-"),
            self.started
        );
        tracing::debug!(source = %name, after = %after, worker = %worker, "cron source started");
        let source = Source::start(
            fires,
            after,
            worker,
            self.ctx.clone(),
            self.dispatch.clone(),
        );
        self.running.insert(name, source);
    }

    /// Makes the schedule sources those of `firing`: a new or changed
    /// schedule gets a source that fires after `now`; a removed, paused
    /// or switched-off one loses its source.
    async fn follow(&mut self, firing: &[StoredSchedule], now: DateTime<Utc>) {
        let wanted: BTreeMap<String, &StoredSchedule> = firing
            .iter()
            .map(|s| (Fires::schedule_name(&s.schedule.name), s))
            .collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter_map(|(name, source)| match &source.fires {
                Fires::Backups(old) => {
                    let same = wanted.get(name).is_some_and(|new| {
                        new.schedule == old.schedule && new.updated_at == old.updated_at
                    });
                    (!same).then(|| name.clone())
                }
                Fires::Chore(..) => None,
            })
            .collect();
        for name in stale {
            if let Some(source) = self.running.remove(&name) {
                tracing::debug!(source = %name, "cron source stopped: the schedule changed");
                source.stop().await;
            }
        }
        for (name, s) in wanted {
            if !self.running.contains_key(&name) {
                self.start(Fires::Backups(s.clone()), now);
            }
        }
    }

    /// Restarts sources whose worker ended or whose timer fell behind
    /// (each restart dispatches the open fires at once); returns the time
    /// up to which every fire was dispatched.
    async fn look_over(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let troubled: Vec<String> = self
            .running
            .iter()
            .filter(|(_, s)| s.ended() || s.planned().is_some_and(|at| at < now - OVERDUE))
            .map(|(name, _)| name.clone())
            .collect();
        for name in troubled {
            let Some(source) = self.running.remove(&name) else {
                continue;
            };
            let after = source
                .first_open()
                .map_or(now, |at| at - TimeDelta::nanoseconds(1));
            let overdue = source.planned();
            let fires = source.fires.clone();
            match source.stop().await {
                Some(e) => {
                    tracing::warn!(source = %name, error = %e, "cron source failed; restarting it")
                }
                None if overdue.is_some() => tracing::warn!(source = %name, fire = ?overdue,
                    "a fire time passed unnoticed (the clock jumped or the host was suspended); dispatching it now"),
                None => {
                    tracing::warn!(source = %name, "this cron expression has no fire time left; it no longer fires");
                    continue;
                }
            }
            self.start(fires, after);
        }
        self.running
            .values()
            .map(|s| s.checked_until(now))
            .min()
            .unwrap_or(now)
    }

    async fn stop_all(&mut self) {
        for (_, source) in std::mem::take(&mut self.running) {
            source.stop().await;
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

//! What a fire is (one job per target of a schedule at a fire time), and
//! the catch-up of fires missed while no worker ran. Pure: stored schedules
//! and times in, fires out.

use chrono::{DateTime, TimeDelta, Utc};

use crate::{jobs::payload::BackupJob, model::Trigger, schedule::plan::StoredSchedule};

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

/// The fire of `s` at `at`: a job per target.
pub fn fire(s: &StoredSchedule, at: DateTime<Utc>, trigger: Trigger) -> Fire {
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
                triggered_by: None,
                scheduled_for: Some(at),
                job_id: None,
            })
            .collect(),
    }
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
        let horizon = now
            .checked_sub_signed(window)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
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

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::{config::Timezone, model::BackupType, schedule::plan::Schedule};

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
            paused: None,
        }
    }

    #[test]
    fn a_fire_is_one_job_per_target_at_its_time() {
        let s = stored("0 * * * *", "2026-11-26T10:30:00Z", None);
        let f = fire(&s, at("2026-11-26T11:00:00Z"), Trigger::Schedule);
        assert_eq!(f.schedule, "database");
        let targets: Vec<_> = f.jobs.iter().map(|j| j.target.as_str()).collect();
        assert_eq!(targets, ["app", "crm"]);
        assert!(f.jobs.iter().all(|j| j.trigger == Trigger::Schedule
            && j.scheduled_for == Some(at("2026-11-26T11:00:00Z"))
            && j.idempotency_key("database").is_some()));
    }

    #[test]
    fn disabled_schedules_are_never_caught_up() {
        let mut s = stored("* * * * *", "2026-11-26T10:00:00Z", None);
        s.schedule.enabled = false;
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

//! What the pages and the JSON API both show: the overview of every
//! target, and the runs filter as a query string gives it.

use backup_core::{
    history::{
        BackupRun, Cursor, HistoryError, RunFilter,
        when::{Edge, parse_when},
    },
    model::{BackupType, RunStatus, parse_target_name},
    schedule::plan::{self, StoredSchedule},
};
use chrono::{DateTime, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};

use crate::state::Web;

/// Runs shown in a target's strip.
pub const STRIP: i64 = 30;

/// One target's health.
#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub backup_type: BackupType,
    pub target: String,
    /// Its newest run, of any status.
    pub last_run: Option<BackupRun>,
    /// Its newest successful run.
    pub last_success: Option<BackupRun>,
    /// Its last [`STRIP`] runs, newest first: id and status.
    pub recent: Vec<(i64, RunStatus)>,
    /// When a schedule next backs it up.
    pub next_fire: Option<DateTime<Utc>>,
    /// Seconds between its schedule's fires.
    pub interval_seconds: Option<i64>,
    /// Why it is stale (no success, or none within twice the interval).
    pub stale: Option<String>,
}

/// The overview: every target, and the state of the workers.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub targets: Vec<TargetStatus>,
    /// `queue` or `single-process`.
    pub mode: &'static str,
    /// False when the master switch is off.
    pub scheduled_backups: bool,
    /// Backup types switched off, and why.
    pub switched_off: Vec<String>,
    /// How the stored schedules differ from the config.
    pub drift: Vec<String>,
    /// Worker processes alive (queue mode).
    pub replicas: Option<Vec<String>>,
    /// Jobs waiting per queue (queue mode).
    pub queue_depth: Option<Vec<(&'static str, u64)>>,
    /// Runs running now.
    pub running: usize,
}

/// Gathers the overview.
///
/// # Errors
///
/// When history cannot be read.
pub async fn overview(web: &Web, now: DateTime<Utc>) -> Result<Overview, HistoryError> {
    let settings = &web.ctx.settings;
    let history = &web.ctx.history;
    let schedules = history.schedules().await?;
    let mut targets = Vec::new();
    let mut running = 0;
    let all = settings
        .targets(&[BackupType::Database, BackupType::Media], None)
        .unwrap_or_default();
    for target in all {
        let (backup_type, name) = (target.backup_type(), target.name().to_string());
        let recent = history
            .list(&RunFilter {
                backup_type: Some(backup_type),
                target: Some(name.clone()),
                limit: STRIP,
                ..RunFilter::default()
            })
            .await?;
        running += recent
            .iter()
            .filter(|r| r.status == RunStatus::Running)
            .count();
        let last_success = history.last_success(backup_type, &name).await?;
        let (next_fire, interval) = next_fire(&schedules, settings, backup_type, &name, now);
        let stale = match (&last_success, interval) {
            (None, _) => Some("no successful backup yet".to_string()),
            (Some(run), Some(every)) => {
                let at = run.completed_at.unwrap_or(run.started_at);
                let age = (now - at).num_seconds();
                (age > 2 * every).then(|| {
                    format!(
                        "the last success is older than twice the schedule's interval ({})",
                        crate::view::age(at, now)
                    )
                })
            }
            (Some(_), None) => None,
        };
        targets.push(TargetStatus {
            backup_type,
            target: name,
            recent: recent.iter().map(|r| (r.id, r.status)).collect(),
            last_run: recent.into_iter().next(),
            last_success,
            next_fire,
            interval_seconds: interval,
            stale,
        });
    }
    // Only types that have targets: an unused type being off is no news.
    let switched_off = [BackupType::Database, BackupType::Media]
        .iter()
        .filter(|t| targets.iter().any(|s: &TargetStatus| s.backup_type == **t))
        .filter_map(|t| settings.scheduled_off(*t).map(|why| format!("{t}: {why}")))
        .collect();
    Ok(Overview {
        targets,
        mode: if web.launcher.queue().is_some() {
            "queue"
        } else {
            "single-process"
        },
        scheduled_backups: settings.enabled,
        switched_off,
        drift: plan::drift(settings, &schedules),
        replicas: web.replicas().await,
        queue_depth: web.depths().await,
        running,
    })
}

/// The next fire of any schedule that backs up this target, and that
/// schedule's interval in seconds (from its next two fires).
fn next_fire(
    schedules: &[StoredSchedule],
    settings: &backup_core::config::Settings,
    backup_type: BackupType,
    name: &str,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Option<i64>) {
    let mut best: (Option<DateTime<Utc>>, Option<i64>) = (None, None);
    for s in schedules.iter().filter(|s| {
        s.schedule.backup_type == backup_type
            && s.schedule.targets.iter().any(|t| t == name)
            && s.off(settings).is_none()
    }) {
        let next = s.schedule.upcoming(now, 2);
        if let Some(first) = next.first().copied()
            && best.0.is_none_or(|b| first < b)
        {
            let interval = next.get(1).map(|second| (*second - first).num_seconds());
            best = (Some(first), interval);
        }
    }
    best
}

/// The runs filter as a query string gives it (the runs page and
/// `GET /api/runs`): every field optional, empty means unset.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct RunQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default, rename = "type")]
    pub backup_type: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub before: String,
    #[serde(default)]
    pub limit: String,
}

/// Rows per page by default, and at most.
pub const PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

impl RunQuery {
    /// The filter, checked: a bad value is an error naming it.
    ///
    /// # Errors
    ///
    /// Which parameter is wrong, and why.
    pub fn filter(&self, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Result<RunFilter, String> {
        let some = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        let status = some(&self.status)
            .map(|s| s.parse::<RunStatus>())
            .transpose()
            .map_err(|e| format!("status: {e}"))?;
        let backup_type = some(&self.backup_type)
            .map(|s| s.parse::<BackupType>())
            .transpose()
            .map_err(|e| format!("type: {e}"))?;
        let target = some(&self.target)
            .map(|s| parse_target_name(&s))
            .transpose()
            .map_err(|e| format!("target: {e}"))?;
        let since = some(&self.since)
            .map(|s| parse_when(&s, now, tz, Edge::Start))
            .transpose()
            .map_err(|e| format!("since: {e}"))?;
        let until = some(&self.until)
            .map(|s| parse_when(&s, now, tz, Edge::End))
            .transpose()
            .map_err(|e| format!("until: {e}"))?;
        let search = some(&self.q);
        if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
            return Err("q: at most 200 characters".into());
        }
        let before = some(&self.before).map(|s| parse_cursor(&s)).transpose()?;
        let limit = match some(&self.limit) {
            None => PAGE,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| format!("limit: a number from 1 to {MAX_PAGE}"))?,
        };
        Ok(RunFilter {
            status,
            backup_type,
            target,
            since,
            until,
            search,
            before,
            limit,
        })
    }
}

/// `<microseconds since the epoch>.<run id>`: the last run of a page.
pub fn cursor_text(run: &BackupRun) -> String {
    format!("{}.{}", run.started_at.timestamp_micros(), run.id)
}

fn parse_cursor(s: &str) -> Result<Cursor, String> {
    let bad = || "before: not a page position".to_string();
    let (micros, id) = s.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let id: i64 = id.parse().map_err(|_| bad())?;
    let started_at = Utc.timestamp_micros(micros).single().ok_or_else(bad)?;
    Ok(Cursor { started_at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_query_values_are_named_and_good_ones_parse() {
        let now = Utc::now();
        let tz = chrono_tz::UTC;
        let q = |f: fn(&mut RunQuery)| {
            let mut q = RunQuery::default();
            f(&mut q);
            q.filter(tz, now)
        };
        assert!(
            q(|q| q.status = "weird".into())
                .expect_err("status")
                .starts_with("status:")
        );
        assert!(
            q(|q| q.target = "../etc".into())
                .expect_err("target")
                .starts_with("target:")
        );
        assert!(
            q(|q| q.limit = "100000000000000000000".into())
                .expect_err("limit")
                .starts_with("limit:")
        );
        assert!(
            q(|q| q.before = "9999999999999999999.1".into())
                .expect_err("cursor")
                .starts_with("before:")
        );
        let ok = q(|q| {
            q.status = "FAILED".into();
            q.since = "7d".into();
            q.before = "1764979200000000.42".into();
        })
        .expect("filter");
        assert_eq!(ok.status, Some(RunStatus::Failed));
        assert_eq!(ok.before.map(|c| c.id), Some(42));
        assert_eq!(ok.limit, PAGE);
    }
}

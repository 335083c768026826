//! The backup schedules the config asks for, and the pure plan that
//! `schedules setup` and `schedules remove` apply to the stored ones.

use chrono::{DateTime, Utc};

use super::cron::CronSchedule;
use crate::{
    config::{ConfigError, Settings, Timezone},
    model::BackupType,
};

/// A backup schedule: what fires when. Stored in history
/// (`backup_schedules`) by `schedules setup`, read by every worker.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Schedule {
    /// Unique name (`database`, `media`).
    pub name: String,
    /// What it backs up.
    pub backup_type: BackupType,
    /// The targets each fire backs up, one job per target.
    pub targets: Vec<String>,
    /// When.
    pub cron: CronSchedule,
    /// The IANA zone `cron` is read in.
    pub timezone: Timezone,
    /// Whether workers fire it.
    pub enabled: bool,
}

impl Schedule {
    /// The next `count` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        self.cron.upcoming(&self.timezone.0, after, count)
    }
}

/// A schedule as stored, with its bookkeeping.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredSchedule {
    /// The schedule.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// The newest fire time that was enqueued.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// When `schedules setup` created it.
    pub created_at: DateTime<Utc>,
    /// When it last changed; fire times before this are never caught up.
    pub updated_at: DateTime<Utc>,
    /// Set while paused at runtime (from the dashboard): it does not fire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
}

impl StoredSchedule {
    /// Why it does not fire under `settings`, or `None` when it fires.
    pub fn off(&self, settings: &Settings) -> Option<String> {
        if !self.schedule.enabled {
            return Some("the schedule is disabled".into());
        }
        if let Some(why) = settings.scheduled_off(self.schedule.backup_type) {
            return Some(why.to_string());
        }
        self.paused
            .as_ref()
            .map(|p| format!("paused by {} at {}", p.by, p.at.to_rfc3339()))
    }
}

/// A runtime pause of a schedule: who paused it, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pause {
    /// `web:<user>`, `token:<name>`, ...
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The schedules the config asks for: one per enabled backup type that has
/// targets.
///
/// # Errors
///
/// When `enabled = false`: then there must be no schedules, and `schedules
/// remove` is the command that says so.
pub fn desired(settings: &Settings) -> Result<Vec<Schedule>, ConfigError> {
    if !settings.enabled {
        return Err(ConfigError::Invalid(
            "scheduled backups are switched off (enabled = false); set enabled = true, \
             or run `backup-cli schedules remove` to delete the stored schedules"
                .into(),
        ));
    }
    let mut schedules = Vec::new();
    let db = &settings.database_backup;
    if db.enabled && !db.databases.is_empty() {
        schedules.push(Schedule {
            name: "database".into(),
            backup_type: BackupType::Database,
            targets: db.databases.iter().map(|d| d.name.clone()).collect(),
            cron: db.schedule.clone(),
            timezone: settings.timezone,
            enabled: true,
        });
    }
    let media = &settings.media_backup;
    if media.enabled && !media.paths.is_empty() {
        schedules.push(Schedule {
            name: "media".into(),
            backup_type: BackupType::Media,
            targets: media.paths.iter().map(|m| m.name.clone()).collect(),
            cron: media.schedule.clone(),
            timezone: settings.timezone,
            enabled: true,
        });
    }
    Ok(schedules)
}

/// What a plan does to one schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not stored yet: insert it.
    Create,
    /// Stored with other settings: update it.
    Update,
    /// Stored but no longer wanted: delete it.
    Delete,
    /// Stored as wanted: leave it.
    Unchanged,
}

impl Action {
    /// The past-tense word printed for it.
    pub fn done(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Update => "updated",
            Action::Delete => "deleted",
            Action::Unchanged => "unchanged",
        }
    }

    /// The word printed for it in a dry run.
    pub fn would(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Unchanged => "leave unchanged",
        }
    }
}

/// A reconciliation of stored schedules with the wanted ones.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Plan {
    /// One entry per schedule, wanted ones first, then deletions.
    pub items: Vec<(Action, Schedule)>,
}

impl Plan {
    /// How many entries have this action.
    pub fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|(a, _)| *a == action).count()
    }

    /// `N created, N updated, N deleted, N unchanged`.
    pub fn summary(&self) -> String {
        format!(
            "{} created, {} updated, {} deleted, {} unchanged",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Delete),
            self.count(Action::Unchanged)
        )
    }
}

/// Decides how to turn `stored` into `wanted`, without touching anything.
pub fn plan(wanted: &[Schedule], stored: &[StoredSchedule]) -> Plan {
    let mut items = Vec::new();
    for schedule in wanted {
        let action = match stored.iter().find(|s| s.schedule.name == schedule.name) {
            None => Action::Create,
            Some(s) if s.schedule == *schedule => Action::Unchanged,
            Some(_) => Action::Update,
        };
        items.push((action, schedule.clone()));
    }
    for s in stored {
        if !wanted.iter().any(|w| w.name == s.schedule.name) {
            items.push((Action::Delete, s.schedule.clone()));
        }
    }
    Plan { items }
}

/// The plan of `schedules remove`: delete every stored schedule.
pub fn removal(stored: &[StoredSchedule]) -> Plan {
    Plan {
        items: stored
            .iter()
            .map(|s| (Action::Delete, s.schedule.clone()))
            .collect(),
    }
}

/// How the stored schedules differ from what the config asks for: what
/// `schedules setup` would change, one line each. Empty when they match,
/// and when scheduled backups are switched off altogether (nothing fires
/// then); a schedule whose type is switched off is not drift either.
pub fn drift(settings: &Settings, stored: &[StoredSchedule]) -> Vec<String> {
    let Ok(wanted) = desired(settings) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for (action, schedule) in plan(&wanted, stored).items {
        let name = &schedule.name;
        match action {
            Action::Unchanged => {}
            Action::Create => lines.push(format!(
                "schedule {name} is in the config but not stored (targets: {})",
                schedule.targets.join(", ")
            )),
            Action::Delete if settings.scheduled_off(schedule.backup_type).is_some() => {}
            Action::Delete => lines.push(format!(
                "schedule {name} is stored but no longer in the config"
            )),
            Action::Update => {
                let Some(old) = stored.iter().find(|s| s.schedule.name == *name) else {
                    continue;
                };
                let old = &old.schedule;
                let mut changes = Vec::new();
                if old.targets != schedule.targets {
                    changes.push(format!(
                        "targets {} -> {}",
                        old.targets.join(", "),
                        schedule.targets.join(", ")
                    ));
                }
                if old.cron != schedule.cron {
                    changes.push(format!(
                        "cron {:?} -> {:?}",
                        old.cron.as_str(),
                        schedule.cron.as_str()
                    ));
                }
                if old.timezone != schedule.timezone {
                    changes.push(format!(
                        "timezone {} -> {}",
                        old.timezone.0.name(),
                        schedule.timezone.0.name()
                    ));
                }
                if old.enabled != schedule.enabled {
                    changes.push(format!("enabled {} -> {}", old.enabled, schedule.enabled));
                }
                lines.push(format!(
                    "schedule {name} differs from the config: {}",
                    changes.join("; ")
                ));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(name: &str, cron: &str, targets: &[&str]) -> Schedule {
        Schedule {
            name: name.into(),
            backup_type: if name == "media" {
                BackupType::Media
            } else {
                BackupType::Database
            },
            targets: targets.iter().map(|t| t.to_string()).collect(),
            cron: cron.parse().expect("cron"),
            timezone: Timezone(chrono_tz::UTC),
            enabled: true,
        }
    }

    fn stored(s: Schedule) -> StoredSchedule {
        let t = Utc::now();
        StoredSchedule {
            schedule: s,
            last_fire_at: None,
            created_at: t,
            updated_at: t,
            paused: None,
        }
    }

    #[test]
    fn plan_creates_updates_deletes_and_leaves_alone() {
        let stored = [
            stored(wanted("database", "0 2 * * *", &["app"])),
            stored(wanted("media", "0 3 * * 0", &["uploads"])),
            stored(wanted("old", "0 1 * * *", &["x"])),
        ];
        let desired = [
            wanted("database", "0 2 * * *", &["app"]),
            wanted("media", "0 4 * * 0", &["uploads"]),
            wanted("fresh", "0 5 * * *", &["y"]),
        ];
        let plan = plan(&desired, &stored);
        let actions: Vec<_> = plan
            .items
            .iter()
            .map(|(a, s)| (*a, s.name.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                (Action::Unchanged, "database"),
                (Action::Update, "media"),
                (Action::Create, "fresh"),
                (Action::Delete, "old"),
            ]
        );
        assert_eq!(
            plan.summary(),
            "1 created, 1 updated, 1 deleted, 1 unchanged"
        );
        // A changed target list is an update too.
        let p = super::plan(
            &[wanted("database", "0 2 * * *", &["app", "crm"])],
            &stored[..1],
        );
        assert_eq!(p.items[0].0, Action::Update);
    }

    #[test]
    fn desired_follows_the_config_and_refuses_when_disabled() {
        let mut settings = Settings::default();
        assert!(
            desired(&settings).expect("enabled").is_empty(),
            "no targets, no schedules"
        );
        settings.enabled = false;
        let err = desired(&settings).unwrap_err().to_string();
        assert!(err.contains("enabled = false"), "{err}");
    }

    #[test]
    fn drift_names_what_setup_would_change() {
        let settings = crate::config::from_toml(
            "[database_backup]\ndatabases = [\"sqlite://a.db\", \"sqlite://b.db\"]\n\
             [media_backup]\nenabled = true\npaths = [\"m\"]\n",
            std::path::Path::new("/srv"),
        )
        .expect("settings");
        let mut db = wanted("database", "0 2 * * *", &["a"]);
        db.timezone = settings.timezone;
        let drift = drift(&settings, &[stored(db.clone())]);
        assert_eq!(
            drift,
            [
                "schedule database differs from the config: targets a -> a, b",
                "schedule media is in the config but not stored (targets: m)"
            ]
        );
        // Switched off, nothing fires: not drift.
        let mut off = settings.clone();
        off.enabled = false;
        assert!(super::drift(&off, &[stored(db)]).is_empty());
    }
}

//! Schedules: cron expressions and their fire times ([`cron`]), the
//! schedules the config asks for and the plan that reconciles the stored
//! ones with them ([`plan`](mod@plan)), and `schedules setup` / `remove`, which read
//! the stored schedules, plan, and apply unless it is a dry run.

pub mod cron;
pub mod plan;

use chrono::{DateTime, Utc};

pub use self::{
    cron::{CronError, CronSchedule},
    plan::{Action, Plan, Schedule, StoredSchedule, desired, drift, plan, removal},
};
use crate::{Error, config::Settings, history::History};

/// `schedules setup`: the plan that makes the stored schedules match the
/// config, applied at `now` unless `dry_run`. A dry run never creates,
/// migrates or writes the history database.
///
/// # Errors
///
/// When the config asks for no schedules at all (`enabled = false`), or
/// history cannot be read or written.
pub async fn setup(settings: &Settings, dry_run: bool, now: DateTime<Utc>) -> Result<Plan, Error> {
    let wanted = desired(settings)?;
    let (history, stored) = stored(settings, dry_run).await?;
    let plan = plan::plan(&wanted, &stored);
    if let Some(history) = history.filter(|_| !dry_run) {
        history.apply_schedules(&plan, now).await?;
    }
    Ok(plan)
}

/// `schedules remove`: the plan that deletes every stored schedule, applied
/// at `now` unless `dry_run`.
///
/// # Errors
///
/// When history cannot be read or written.
pub async fn remove(settings: &Settings, dry_run: bool, now: DateTime<Utc>) -> Result<Plan, Error> {
    let (history, stored) = stored(settings, dry_run).await?;
    let plan = removal(&stored);
    if let Some(history) = history.filter(|_| !dry_run && !plan.items.is_empty()) {
        history.apply_schedules(&plan, now).await?;
    }
    Ok(plan)
}

/// The history (none when a dry run finds no schema) and what it stores.
async fn stored(
    settings: &Settings,
    dry_run: bool,
) -> Result<(Option<History>, Vec<StoredSchedule>), Error> {
    let history = if dry_run {
        History::open_existing(&settings.history.url).await?
    } else {
        Some(History::open(&settings.history.url).await?)
    };
    let stored = match &history {
        Some(h) => h.schedules().await?,
        None => Vec::new(),
    };
    Ok((history, stored))
}

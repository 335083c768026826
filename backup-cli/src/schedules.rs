//! `schedules setup|remove|list|next`: the stored backup schedules.

use std::process::ExitCode;

use anyhow::Context as _;
use backup_core::{
    config::{Settings, Timezone},
    history::{History, HistoryError, RunFilter},
    schedule::{self, Action, CronSchedule, Plan, Schedule},
};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use serde::Serialize;

use crate::output::{self, outln};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, update or delete stored schedules to match the config.
    Setup {
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete every stored backup schedule.
    Remove {
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List stored schedules with their next fire time and last run.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Preview the fire times of a cron expression.
    Next {
        /// Cron expression: 5 fields, 6 with leading seconds, or @daily etc.
        cron: String,
        /// IANA timezone to read it in [default: the config's timezone].
        #[arg(long, value_name = "TZ")]
        timezone: Option<String>,
        /// Start after this time (RFC 3339) [default: now].
        #[arg(long, value_name = "RFC3339")]
        after: Option<String>,
        /// How many fire times.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
        /// Print a JSON array of RFC 3339 timestamps.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Setup { dry_run } => {
            let now = Utc::now();
            let plan = schedule::setup(&settings, dry_run, now).await?;
            print(&plan, dry_run, now);
            Ok(ExitCode::SUCCESS)
        }
        Command::Remove { dry_run } => {
            let now = Utc::now();
            let plan = schedule::remove(&settings, dry_run, now).await?;
            if plan.items.is_empty() {
                outln!("no schedules are stored; nothing to remove");
            } else {
                print(&plan, dry_run, now);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { json } => list(&settings, json).await,
        Command::Next {
            cron,
            timezone,
            after,
            count,
            json,
        } => {
            let cron: CronSchedule = cron.parse()?;
            let tz = match timezone {
                Some(name) => Timezone::try_from(name).map_err(anyhow::Error::msg)?,
                None => settings.timezone,
            };
            let after = match after {
                Some(text) => DateTime::parse_from_rfc3339(&text)
                    .with_context(|| {
                        format!("--after {text:?} is not an RFC 3339 time (2026-11-26T02:00:00Z)")
                    })?
                    .with_timezone(&Utc),
                None => Utc::now(),
            };
            let fires: Vec<String> = cron
                .upcoming(&tz.0, after, count as usize)
                .iter()
                .map(|t| {
                    t.with_timezone(&tz.0)
                        .to_rfc3339_opts(SecondsFormat::Secs, false)
                })
                .collect();
            if json {
                output::json(&fires)?;
            } else {
                for (t, text) in cron
                    .upcoming(&tz.0, after, count as usize)
                    .iter()
                    .zip(&fires)
                {
                    outln!("{}  ({text})", output::time(*t, tz));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What the plan does (or, in a dry run, would do), one line a schedule.
fn print(plan: &Plan, dry_run: bool, now: DateTime<Utc>) {
    for (action, s) in &plan.items {
        let verb = if dry_run {
            format!("[DRY RUN] would {}", action.would())
        } else {
            action.done().to_string()
        };
        outln!("{verb} {}", describe(s, *action, now));
    }
    if dry_run {
        outln!("[DRY RUN] {} (nothing written)", plan.summary());
    } else {
        outln!("{}", plan.summary());
    }
}

/// `database (database: app, analytics) "0 2 * * *" Europe/Rome; next: ...`
fn describe(s: &Schedule, action: Action, now: DateTime<Utc>) -> String {
    let mut line = format!(
        "{} ({}: {}) \"{}\" {}",
        s.name,
        s.backup_type,
        s.targets.join(", "),
        s.cron.as_str(),
        s.timezone.0.name()
    );
    if action != Action::Delete {
        let next: Vec<String> = s
            .upcoming(now, 3)
            .into_iter()
            .map(|t| output::time(t, s.timezone))
            .collect();
        line.push_str(&format!("; next: {}", next.join(", ")));
    }
    line
}

#[derive(Serialize)]
struct Listed {
    name: String,
    backup_type: String,
    targets: Vec<String>,
    cron: String,
    timezone: String,
    enabled: bool,
    /// Whether it fires: enabled, and its backups not switched off.
    fires: bool,
    /// Why it does not fire, when it does not.
    off: Option<String>,
    next_fire: Option<DateTime<Utc>>,
    last_fire_at: Option<DateTime<Utc>>,
    last_run: Option<LastRun>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct LastRun {
    id: i64,
    target: String,
    status: String,
    started_at: DateTime<Utc>,
}

async fn list(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    // Reading never migrates or writes the history.
    let history = match History::open_read_only(&settings.history.url).await {
        Ok(history) => Some(history),
        Err(HistoryError::Missing(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let now = Utc::now();
    let mut listed = Vec::new();
    let stored = match &history {
        Some(history) => history.schedules().await?,
        None => Vec::new(),
    };
    let drift = schedule::drift(settings, &stored);
    let Some(history) = history else {
        return print_list(settings, &listed, &drift, json);
    };
    for stored in stored {
        let s = &stored.schedule;
        let off = stored.off(settings);
        let last = history
            .list(&RunFilter {
                backup_type: Some(s.backup_type),
                limit: 1,
                ..RunFilter::default()
            })
            .await?
            .into_iter()
            .next();
        listed.push(Listed {
            name: s.name.clone(),
            backup_type: s.backup_type.to_string(),
            targets: s.targets.clone(),
            cron: s.cron.as_str().to_string(),
            timezone: s.timezone.0.name().to_string(),
            enabled: s.enabled,
            fires: off.is_none(),
            next_fire: off
                .is_none()
                .then(|| s.upcoming(now, 1).into_iter().next())
                .flatten(),
            off,
            last_fire_at: stored.last_fire_at,
            last_run: last.map(|r| LastRun {
                id: r.id,
                target: r.target,
                status: r.status.to_string(),
                started_at: r.started_at,
            }),
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        });
    }
    print_list(settings, &listed, &drift, json)
}

fn print_list(
    settings: &Settings,
    listed: &[Listed],
    drift: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&listed)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !settings.enabled {
        outln!(
            "scheduled backups are switched off (enabled = false): no schedule fires; \
             `backup` and `trigger` still run"
        );
    }
    if listed.is_empty() {
        outln!("no schedules are stored; run `backup-cli schedules setup`");
    } else {
        print_table(settings, listed);
    }
    for line in drift {
        outln!("drift: {line}; run `backup-cli schedules setup` to apply the config");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(settings: &Settings, listed: &[Listed]) {
    let tz = settings.timezone;
    let mut table = output::table(&[
        "NAME",
        "TYPE",
        "TARGETS",
        "CRON",
        "TIMEZONE",
        "FIRES",
        "NEXT FIRE",
        "LAST RUN",
    ]);
    for l in listed {
        table.add_row(vec![
            l.name.clone(),
            l.backup_type.clone(),
            l.targets.join(", "),
            l.cron.clone(),
            l.timezone.clone(),
            match &l.off {
                None => "yes".to_string(),
                Some(why) => format!("no ({why})"),
            },
            l.next_fire.map_or("-".into(), |t| output::time(t, tz)),
            l.last_run.as_ref().map_or("-".into(), |r| {
                format!(
                    "#{} {} {} ({})",
                    r.id,
                    r.target,
                    r.status,
                    output::time(r.started_at, tz)
                )
            }),
        ]);
    }
    outln!("{table}");
}

//! `runs list|show|cleanup`: the run history.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use backup_core::{
    config::Settings,
    history::{BackupRun, History, RunFilter},
    maintenance,
    model::{BackupType, RunStatus},
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use clap::Subcommand;
use comfy_table::Cell;

use crate::output::{self, outln};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List runs, newest first.
    List {
        /// Only runs with this status (running, success, failed).
        #[arg(long, value_parser = parse_status)]
        status: Option<RunStatus>,
        /// Only runs of this type (database, media).
        #[arg(long = "type", value_parser = parse_type)]
        backup_type: Option<BackupType>,
        /// Only runs of this target.
        #[arg(long)]
        target: Option<String>,
        /// Only runs started since a date (2026-11-01), a time (RFC 3339) or
        /// an age (30m, 12h, 7d, 2w).
        #[arg(long)]
        since: Option<String>,
        /// Only runs whose error message contains this text.
        #[arg(long)]
        search: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print a JSON array of runs.
        #[arg(long)]
        json: bool,
    },
    /// Show one run in full.
    Show {
        /// Run id.
        id: i64,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete history rows older than history_retention_days.
    Cleanup {
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Override history_retention_days.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        older_than_days: Option<u32>,
    },
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    s.parse()
}

fn parse_type(s: &str) -> Result<BackupType, String> {
    s.parse()
}

pub async fn run(cmd: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let history = History::open(&settings.history.url).await?;
    let now = Utc::now();
    match cmd {
        Command::List {
            status,
            backup_type,
            target,
            since,
            search,
            limit,
            json,
        } => {
            if limit < 1 {
                bail!("--limit must be at least 1");
            }
            let since = since.map(|s| parse_since(&s, now, &settings)).transpose()?;
            let runs = history
                .list(&RunFilter {
                    status,
                    backup_type,
                    target,
                    since,
                    search,
                    limit,
                })
                .await?;
            if json {
                output::json(&runs)?;
            } else if runs.is_empty() {
                eprintln!("no runs match");
            } else {
                print_table(&runs, &settings);
            }
        }
        Command::Show { id, json } => {
            let run = history.get(id).await?;
            if json {
                output::json(&run)?;
            } else {
                print_run(&run, &settings);
            }
        }
        Command::Cleanup {
            dry_run,
            older_than_days,
        } => {
            let days = older_than_days.unwrap_or(settings.history_retention_days);
            let plan = maintenance::plan_history_cleanup(&history, days, now).await?;
            let verb = if dry_run {
                "[DRY RUN] would delete"
            } else {
                "deleting"
            };
            for run in &plan.runs {
                outln!(
                    "{verb} run {} ({} {}, {}, started {})",
                    run.id,
                    run.backup_type,
                    run.target,
                    run.status,
                    output::time(run.started_at, settings.timezone)
                );
            }
            let when = output::time(plan.cutoff, settings.timezone);
            if dry_run {
                outln!(
                    "[DRY RUN] {} run(s) started before {when} ({days} days) would be deleted",
                    plan.runs.len()
                );
            } else {
                let deleted = maintenance::apply_history_cleanup(&history, &plan).await?;
                outln!("{deleted} run(s) started before {when} ({days} days) deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `7d`-style ages, dates (midnight in the configured timezone) and RFC 3339 times.
fn parse_since(s: &str, now: DateTime<Utc>, settings: &Settings) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).context("midnight exists")?;
        return settings
            .timezone
            .0
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("{s} has no midnight in {}", settings.timezone.0));
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number.parse().ok().filter(|_| !unit.is_empty()).with_context(|| {
        format!("--since {s:?}: expected a date (2026-11-01), an RFC 3339 time or an age (30m, 12h, 7d, 2w)")
    })?;
    let age = match unit {
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        other => bail!("--since {s:?}: unknown unit {other:?}; use m, h, d or w"),
    };
    Ok(now - age)
}

fn print_table(runs: &[BackupRun], settings: &Settings) {
    let mut table = output::table(&[
        "ID", "TYPE", "TARGET", "STATUS", "TRIGGER", "STARTED", "DURATION", "SIZE", "ERROR",
    ]);
    for run in runs {
        let mut error = run.error_message.clone();
        if error.chars().count() > 60 {
            error = error.chars().take(59).collect::<String>() + "…";
        }
        table.add_row(vec![
            Cell::new(run.id),
            Cell::new(run.backup_type),
            Cell::new(&run.target),
            output::status_cell(run.status),
            Cell::new(run.trigger),
            Cell::new(output::time(run.started_at, settings.timezone)),
            Cell::new(
                run.duration_seconds
                    .map(|d| format!("{d:.1} s"))
                    .unwrap_or_default(),
            ),
            Cell::new(
                run.size_bytes
                    .map(|s| output::bytes(s as u64))
                    .unwrap_or_default(),
            ),
            Cell::new(error),
        ]);
    }
    outln!("{table}");
}

fn print_run(run: &BackupRun, settings: &Settings) {
    let tz = settings.timezone;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows = [
        ("id", run.id.to_string()),
        ("backup_type", run.backup_type.to_string()),
        ("target", run.target.clone()),
        ("status", run.status.to_string()),
        ("trigger", run.trigger.to_string()),
        (
            "scheduled_for",
            opt(run.scheduled_for.map(|t| output::time(t, tz))),
        ),
        ("task_id", opt(run.task_id.clone())),
        ("attempt", run.attempt.to_string()),
        ("worker", run.worker.clone()),
        ("started_at", output::time(run.started_at, tz)),
        (
            "completed_at",
            opt(run.completed_at.map(|t| output::time(t, tz))),
        ),
        (
            "duration_seconds",
            opt(run.duration_seconds.map(|d| format!("{d:.3}"))),
        ),
        ("artifact", opt(run.artifact.clone())),
        (
            "size_bytes",
            opt(run
                .size_bytes
                .map(|s| format!("{s} ({})", output::bytes(s as u64)))),
        ),
        ("sha256", opt(run.sha256.clone())),
        (
            "error_message",
            if run.error_message.is_empty() {
                "-".into()
            } else {
                run.error_message.clone()
            },
        ),
        ("notification", opt(run.notification.clone())),
    ];
    for (key, value) in rows {
        outln!("{key:<17}{value}");
    }
}

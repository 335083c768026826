//! `runs list|show|cleanup`: the run history.

use std::process::ExitCode;

use backup_core::{
    config::Settings,
    history::{
        BackupRun, History, HistoryError, RunFilter,
        when::{self, Edge},
    },
    maintenance,
    model::parse_target_name,
    model::{BackupType, RunStatus},
    storage::{Storage, StorageError},
};
use chrono::Utc;
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
        #[arg(long, value_parser = parse_target_name)]
        target: Option<String>,
        /// Only runs started since a date (2026-11-01), a time (RFC 3339) or
        /// an age (30m, 12h, 7d, 2w).
        #[arg(long)]
        since: Option<String>,
        /// Only runs started before a time (RFC 3339) or an age (30m, 12h,
        /// 7d, 2w); a date (2026-11-01) means up to the end of that day.
        #[arg(long)]
        until: Option<String>,
        /// Only runs whose error message contains this text.
        #[arg(long)]
        search: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        /// Show whole error messages (the table cuts them at 60 characters).
        #[arg(long)]
        wide: bool,
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
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_500))]
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
    let now = Utc::now();
    match cmd {
        Command::List {
            status,
            backup_type,
            target,
            since,
            until,
            search,
            limit,
            wide,
            json,
        } => {
            let since = since
                .map(|s| when::parse_when(&s, now, settings.timezone.0, Edge::Start))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--since {e}"))?;
            let until = until
                .map(|s| when::parse_when(&s, now, settings.timezone.0, Edge::End))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--until {e}"))?;
            let filter = RunFilter {
                status,
                backup_type,
                target,
                since,
                until,
                search,
                before: None,
                limit,
            };
            // Reading never migrates or writes the history.
            let runs = match History::open_read_only(&settings.history.url).await {
                Ok(history) => history.list(&filter).await?,
                Err(HistoryError::Missing(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            if json {
                output::json(&runs)?;
            } else if runs.is_empty() {
                eprintln!("no runs match");
            } else {
                print_table(&runs, &settings, wide);
            }
        }
        Command::Show { id, json } => {
            let history = History::open_read_only(&settings.history.url).await?;
            let run = history.get(id).await?;
            if json {
                output::json(&run)?;
            } else {
                let stored = match &run.artifact {
                    Some(key) => Some(Storage::new(&settings.storage).exists(key).await),
                    None => None,
                };
                print_run(&run, stored, &settings);
            }
        }
        Command::Cleanup {
            dry_run,
            older_than_days,
        } => {
            let history = History::open(&settings.history.url).await?;
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

fn print_table(runs: &[BackupRun], settings: &Settings, wide: bool) {
    let mut table = output::table(&[
        "ID", "TYPE", "TARGET", "STATUS", "TRIGGER", "STARTED", "DURATION", "SIZE", "ERROR",
    ]);
    for run in runs {
        let mut error = run.error_message.clone();
        if !wide && error.chars().count() > 60 {
            error = error.chars().take(59).collect::<String>() + "…";
        }
        table.add_row(vec![
            Cell::new(run.id),
            Cell::new(run.backup_type),
            Cell::new(&run.target),
            output::status_cell(run.status),
            Cell::new(match &run.triggered_by {
                Some(by) => format!("{} by {by}", run.trigger),
                None => run.trigger.to_string(),
            }),
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

/// `stored`: whether the run's artifact is still in storage, if it has one.
fn print_run(run: &BackupRun, stored: Option<Result<bool, StorageError>>, settings: &Settings) {
    let tz = settings.timezone;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let artifact = match (&run.artifact, stored) {
        (Some(key), Some(Ok(true))) => key.clone(),
        (Some(key), Some(Ok(false))) => {
            format!("{key} (no longer in storage: deleted by retention or by hand)")
        }
        (Some(key), Some(Err(e))) => format!("{key} (storage cannot say if it is there: {e})"),
        (Some(key), None) => key.clone(),
        (None, _) => "-".into(),
    };
    let rows = [
        ("id", run.id.to_string()),
        ("backup_type", run.backup_type.to_string()),
        ("target", run.target.clone()),
        ("status", run.status.to_string()),
        ("trigger", run.trigger.to_string()),
        ("triggered_by", opt(run.triggered_by.clone())),
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
        ("artifact", artifact),
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
        (
            "verified_at",
            opt(run.verified_at.map(|t| output::time(t, tz))),
        ),
        ("verify_result", opt(run.verify_result.clone())),
    ];
    for (key, value) in rows {
        outln!("{key:<17}{value}");
    }
}

//! `backup database|media|all`: run backups now, in this process.

use std::{io::IsTerminal, process::ExitCode};

use backup_core::{
    backup::{self, Context, Report, Request},
    config::Settings,
    history::{BackupType, RunStatus},
    jobs::{self, Locks},
    notify::Notice,
    pipeline::Progress,
    queue::Queue,
};
use clap::ValueEnum;

use crate::output::{self, outln};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// Every configured database.
    Database,
    /// Every configured media directory.
    Media,
    /// Every configured database, then every media directory.
    All,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to back up.
    kind: Kind,
    /// Only the target with this name.
    #[arg(long, short)]
    target: Option<String>,
    /// Print the finished runs as a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let types = match args.kind {
        Kind::Database => vec![BackupType::Database],
        Kind::Media => vec![BackupType::Media],
        Kind::All => vec![BackupType::Database, BackupType::Media],
    };
    // Resolve the targets before opening anything, so a typo changes nothing.
    backup::select(&settings, &types, args.target.as_deref())?;
    let mut ctx = Context::open(settings).await?;
    // The user is waiting: one try per notification (the worker retries).
    ctx.notifier = ctx.notifier.single_try();
    let locks = target_locks(&ctx).await;
    let mut runs = Vec::new();
    let mut failed = 0;
    for target in backup::select(&ctx.settings, &types, args.target.as_deref())? {
        let progress = Progress::default();
        let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
            output::spinner(
                &format!("{} {}", target.backup_type(), target.name()),
                progress.clone(),
            )
        });
        let held = match &locks {
            Some(locks) => {
                let name = jobs::lock_name(target.backup_type(), target.name());
                Some(
                    locks
                        .acquire(&name, ctx.settings.worker.lost_after())
                        .await?,
                )
            }
            None => None,
        };
        let report = backup::run(&ctx, target, &Request::manual(), progress).await;
        if let Some(held) = held {
            held.release().await;
        }
        if let Some((bar, ticker)) = bar {
            ticker.abort();
            bar.finish_and_clear();
        }
        let mut report = report?;
        // A failed mail is logged and shown; the backup's outcome stands.
        let delivery = ctx
            .notifier
            .finished(&ctx.history, &Notice::for_run(&report.run))
            .await;
        report.run.notification = Some(delivery.to_string());
        if report.run.status != RunStatus::Success {
            failed += 1;
            eprintln!(
                "error: {} backup of {:?} failed: {}",
                report.run.backup_type, report.run.target, report.run.error_message
            );
        }
        if !args.json {
            print_report(&report);
        }
        runs.push(report.run);
    }
    if args.json {
        output::json(&runs)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// With a queue configured, backups here take the same per-target lock as
/// the workers, so they never overlap a worker's backup of the target.
async fn target_locks(ctx: &Context) -> Option<Locks> {
    let settings = ctx.settings.queue.as_ref()?;
    match Queue::connect(settings).await {
        Ok(queue) => Some(Locks::Redis(queue)),
        Err(e) => {
            eprintln!(
                "warning: {e}; backing up without the per-target lock, so a worker may back up \
                 the same target at the same time"
            );
            None
        }
    }
}

fn print_report(report: &Report) {
    let run = &report.run;
    let duration = run.duration_seconds.unwrap_or_default();
    match run.status {
        RunStatus::Success => {
            outln!(
                "{} {}: success (run {}, {duration:.2} s)",
                run.backup_type,
                run.target,
                run.id
            );
            outln!(
                "  artifact  {}",
                run.artifact.as_deref().unwrap_or_default()
            );
            let size = run.size_bytes.unwrap_or_default() as u64;
            outln!("  size      {} ({size} bytes)", output::bytes(size));
            outln!("  sha256    {}", run.sha256.as_deref().unwrap_or_default());
            if let Some(files) = report.manifest.as_ref().and_then(|m| m.files) {
                outln!("  files     {files}");
            }
            for key in &report.pruned {
                outln!("  pruned    {key}");
            }
        }
        _ => {
            outln!(
                "{} {}: FAILED (run {}, {duration:.2} s)",
                run.backup_type,
                run.target,
                run.id
            );
            outln!("  error     {}", run.error_message);
        }
    }
    if let Some(mail) = run.notification.as_deref().filter(|m| *m != "skipped") {
        outln!("  mail      {mail}");
    }
    for warning in &report.warnings {
        outln!("  warning   {warning}");
    }
}

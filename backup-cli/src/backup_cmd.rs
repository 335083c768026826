//! `backup database|media|all`: run backups now, in this process, with the
//! job runner the workers use (one attempt: the user is waiting).

use std::{io::IsTerminal, process::ExitCode};

use backup_core::{
    config::Settings,
    context::{self, Context},
    jobs::{BackupJob, Done, JobFailed, Runner, run_backup},
    lock,
    model::parse_target_name,
    model::{BackupType, Trigger},
    notify::Sender,
    pipeline::Progress,
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
    #[arg(long, short, value_parser = parse_target_name)]
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
    let jobs: Vec<BackupJob> = settings
        .targets(&types, args.target.as_deref())?
        .iter()
        .map(|t| BackupJob {
            backup_type: t.backup_type(),
            target: t.name().to_string(),
            trigger: Trigger::Manual,
            triggered_by: Some(context::cli_actor()),
            scheduled_for: None,
            job_id: None,
        })
        .collect();
    // With [queue], the lock every worker takes: never back up beside one.
    let locks = lock::for_settings(&settings).await?;
    let mut ctx = Context::open(settings).await?;
    // The user is waiting: one try per notification (the worker retries).
    ctx.notifier = ctx.notifier.single_try().sent_by(Sender::Cli);
    let runner = Runner {
        attempts: 1,
        ..Runner::new(ctx, locks, None)
    };
    let mut runs = Vec::new();
    let mut failed = 0;
    for job in &jobs {
        let progress = Progress::default();
        let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
            output::spinner(
                &format!("{} {}", job.backup_type, job.target),
                progress.clone(),
            )
        });
        let outcome = run_backup(&runner, job, None, progress).await;
        if let Some((bar, ticker)) = bar {
            ticker.abort();
            bar.finish_and_clear();
        }
        match outcome {
            Ok(done) => {
                if !args.json {
                    print_done(&done);
                }
                runs.push(done.run);
            }
            Err(JobFailed { message, run }) => {
                failed += 1;
                eprintln!(
                    "error: {} backup of {:?} failed: {message}",
                    job.backup_type, job.target
                );
                if let Some(run) = run {
                    if !args.json {
                        print_failed(&run, &message);
                    }
                    runs.push(run);
                }
            }
        }
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

fn print_done(done: &Done) {
    let run = &done.run;
    let duration = run.duration_seconds.unwrap_or_default();
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
    if let Some(files) = done.manifest.as_ref().and_then(|m| m.files) {
        outln!("  files     {files}");
    }
    for key in &done.pruned {
        outln!("  pruned    {key}");
    }
    print_mail(run.notification.as_deref());
    for warning in &done.warnings {
        outln!("  warning   {warning}");
    }
}

fn print_failed(run: &backup_core::history::BackupRun, message: &str) {
    outln!(
        "{} {}: FAILED (run {}, {:.2} s)",
        run.backup_type,
        run.target,
        run.id,
        run.duration_seconds.unwrap_or_default()
    );
    outln!("  error     {message}");
    print_mail(run.notification.as_deref());
}

fn print_mail(notification: Option<&str>) {
    if let Some(mail) = notification.filter(|m| *m != "skipped") {
        outln!("  mail      {mail}");
    }
}

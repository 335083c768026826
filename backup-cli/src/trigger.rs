//! `trigger database|media`: enqueue a backup for the workers.

use std::{process::ExitCode, time::Duration};

use anyhow::bail;
use backup_core::{
    config::Settings,
    context,
    history::History,
    jobs::BackupJob,
    model::parse_target_name,
    model::{BackupType, RunStatus, Trigger},
    queue::{self, Queue},
};
use clap::{Args as ClapArgs, ValueEnum};

use crate::output::outln;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// What to back up.
    #[arg(value_enum)]
    what: What,
    /// Only this target (default: every target of the type).
    #[arg(long, value_parser = parse_target_name)]
    target: Option<String>,
    /// Wait for the runs to finish; exit non-zero if one failed, or when no
    /// backup-worker is alive to run them.
    #[arg(long)]
    wait: bool,
    /// With --wait: stop waiting after this many seconds (exit non-zero; the
    /// jobs stay queued).
    #[arg(long, value_name = "SECONDS", requires = "wait",
          value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum What {
    Database,
    Media,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let backup_type = match args.what {
        What::Database => BackupType::Database,
        What::Media => BackupType::Media,
    };
    let Some(queue_settings) = &settings.queue else {
        bail!(
            "no [queue] is configured, so there are no workers to trigger; \
             run the backup in this process with `backup-cli backup {backup_type}`"
        );
    };
    let targets = settings.targets(&[backup_type], args.target.as_deref())?;
    let queue = Queue::connect(queue_settings).await?;
    let mut tasks = Vec::new();
    for target in targets {
        let job = BackupJob {
            backup_type,
            target: target.name().to_string(),
            trigger: Trigger::Manual,
            triggered_by: Some(context::cli_actor()),
            scheduled_for: None,
            job_id: None,
        };
        let Some(task_id) = queue
            .push(queue::backup_queue(backup_type), &job, None)
            .await?
        else {
            bail!("the queue dropped the job for {}", target.name());
        };
        outln!(
            "enqueued {backup_type} backup of {}: task {task_id}",
            target.name()
        );
        tasks.push((target.name().to_string(), task_id));
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let kind = queue::backup_queue(backup_type);
    let lost_after = settings.worker.lost_after();
    let no_worker = |still: &str| {
        format!(
            "no backup-worker is alive{still} on queue {:?} at {} (namespace {:?}); the jobs stay \
             queued and run when a worker starts (see `backup-cli runs list`)",
            kind,
            queue.url(),
            queue.namespace()
        )
    };
    if queue.live_workers(kind, lost_after).await?.is_empty() {
        eprintln!("error: {}", no_worker(""));
        return Ok(ExitCode::FAILURE);
    }
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut failed = false;
    let mut checked = tokio::time::Instant::now();
    for (target, task_id) in tasks {
        let result = loop {
            if let Some(result) = queue.result(&task_id).await? {
                break result;
            }
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                let seconds = args.timeout.unwrap_or_default();
                let run = started_run(&settings, &task_id).await;
                eprintln!(
                    "error: gave up waiting after {seconds} s; {target}: task {task_id}{run} is \
                     still queued or running; look it up later with `backup-cli runs list \
                     --target {target}`"
                );
                return Ok(ExitCode::FAILURE);
            }
            if now.duration_since(checked) >= Duration::from_secs(2) {
                checked = now;
                if queue.live_workers(kind, lost_after).await?.is_empty() {
                    eprintln!("error: {}", no_worker(" any more"));
                    return Ok(ExitCode::FAILURE);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let run = result
            .run_id
            .map_or(String::new(), |id| format!(" (run {id})"));
        match result.status {
            RunStatus::Success => outln!("{target}: success{run}"),
            _ => {
                failed = true;
                outln!(
                    "{target}: failed{run}: {}",
                    result.error.as_deref().unwrap_or("no error recorded")
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// ` (run N)` when the task's run has started, read from history.
async fn started_run(settings: &Settings, task_id: &str) -> String {
    let Ok(history) = History::open_read_only(&settings.history.url).await else {
        return String::new();
    };
    match history.task_runs(task_id).await {
        Ok(runs) => runs
            .last()
            .map_or(String::new(), |r| format!(" (run {}, {})", r.id, r.status)),
        Err(_) => String::new(),
    }
}

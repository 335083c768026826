//! `trigger database|media`: enqueue a backup for the workers.

use std::{process::ExitCode, time::Duration};

use anyhow::bail;
use backup_core::{
    config::Settings,
    jobs::BackupJob,
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
    #[arg(long)]
    target: Option<String>,
    /// Wait for the runs to finish; exit non-zero if one failed.
    #[arg(long)]
    wait: bool,
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
            scheduled_for: None,
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
    let mut failed = false;
    let started = std::time::Instant::now();
    let mut hinted = false;
    for (target, task_id) in tasks {
        let result = loop {
            if let Some(result) = queue.result(&task_id).await? {
                break result;
            }
            if !hinted && started.elapsed() > Duration::from_secs(30) {
                hinted = true;
                eprintln!(
                    "still waiting; is a backup-worker running on {} (namespace {:?})? \
                     Ctrl-C stops waiting, the job stays queued",
                    queue.url(),
                    queue.namespace()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
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

//! `artifacts list`: what storage holds, from the manifests.

use std::process::ExitCode;

use backup_core::{config::Settings, model::BackupType, storage::Storage};
use clap::Subcommand;
use comfy_table::Cell;

use crate::output::{self, outln};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List complete artifacts (those with a manifest), newest first.
    List {
        /// Only artifacts of this type (database, media).
        #[arg(long = "type", value_parser = |s: &str| s.parse::<BackupType>())]
        backup_type: Option<BackupType>,
        /// Only artifacts of this target.
        #[arg(long)]
        target: Option<String>,
        /// Print the manifests as a JSON array.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let Command::List {
        backup_type,
        target,
        json,
    } = cmd;
    let storage = Storage::new(&settings.storage);
    let manifests = storage.manifests(backup_type, target.as_deref()).await?;
    if json {
        output::json(&manifests)?;
        return Ok(ExitCode::SUCCESS);
    }
    if manifests.is_empty() {
        eprintln!("no artifacts in {}", storage.url());
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::table(&[
        "TYPE", "TARGET", "RUN", "CREATED", "SIZE", "SHA256", "ARTIFACT",
    ]);
    for m in &manifests {
        table.add_row(vec![
            Cell::new(m.backup_type),
            Cell::new(&m.target),
            Cell::new(m.run_id),
            Cell::new(output::time(m.created_at, settings.timezone)),
            Cell::new(output::bytes(m.size_bytes)),
            Cell::new(&m.sha256),
            Cell::new(&m.artifact),
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

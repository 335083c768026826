//! `artifacts list`: what storage holds, from the manifests.

use std::{io::IsTerminal, process::ExitCode};

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
    // On a terminal the checksum's first 12 digits tell artifacts apart and
    // keep a row on one line; pipes and --json get it whole.
    let short = std::io::stdout().is_terminal();
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
            Cell::new(if short {
                format!("{}…", m.sha256.get(..12).unwrap_or(&m.sha256))
            } else {
                m.sha256.clone()
            }),
            Cell::new(&m.artifact),
        ]);
    }
    outln!("{table}");
    Ok(ExitCode::SUCCESS)
}

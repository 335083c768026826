//! `artifacts list|prune`: what storage holds, from the manifests, and
//! retention applied by hand.

use std::{io::IsTerminal, process::ExitCode};

use backup_core::{
    config::Settings,
    model::{BackupType, parse_target_name},
    retention,
    storage::{Listed, Storage},
};
use clap::Subcommand;
use comfy_table::Cell;
use serde_json::json;

use crate::output::{self, outln};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List complete artifacts (those with a manifest), newest first; a
    /// manifest that disagrees with where it lies is listed as damaged.
    List {
        /// Only artifacts of this type (database, media).
        #[arg(long = "type", value_parser = |s: &str| s.parse::<BackupType>())]
        backup_type: Option<BackupType>,
        /// Only artifacts of this target.
        #[arg(long, value_parser = parse_target_name)]
        target: Option<String>,
        /// Print the manifests as a JSON array (a damaged one as
        /// `{"manifest_key", "damaged"}`).
        #[arg(long)]
        json: bool,
    },
    /// Apply the retention rules of [storage] (keep, keep_daily, keep_weekly,
    /// keep_monthly, keep_yearly) to each configured target now, saying
    /// what each artifact is kept for.
    Prune {
        /// Only targets of this type (database, media).
        #[arg(long = "type", value_parser = |s: &str| s.parse::<BackupType>())]
        backup_type: Option<BackupType>,
        /// Only this target.
        #[arg(long, value_parser = parse_target_name)]
        target: Option<String>,
        /// Print what would be deleted and why the rest is kept; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(cmd: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let (backup_type, target, json) = match cmd {
        Command::List {
            backup_type,
            target,
            json,
        } => (backup_type, target, json),
        Command::Prune {
            backup_type,
            target,
            dry_run,
        } => return prune(&settings, backup_type, target.as_deref(), dry_run).await,
    };
    let storage = Storage::new(&settings.storage);
    let listing = storage.listing(backup_type, target.as_deref()).await?;
    if json {
        let items: Vec<serde_json::Value> = listing
            .iter()
            .map(|listed| match listed {
                Listed::Valid(m) => serde_json::to_value(m).unwrap_or_default(),
                Listed::Damaged { key, reason } => {
                    json!({ "manifest_key": key, "damaged": reason })
                }
            })
            .collect();
        output::json(&items)?;
        return Ok(ExitCode::SUCCESS);
    }
    if listing.is_empty() {
        eprintln!("no artifacts in {}", storage.url());
        return Ok(ExitCode::SUCCESS);
    }
    // On a terminal the checksum's first 12 digits tell artifacts apart and
    // keep a row on one line; pipes and --json get it whole.
    let short = std::io::stdout().is_terminal();
    let mut table = output::table(&[
        "TYPE", "TARGET", "RUN", "CREATED", "SIZE", "SHA256", "ARTIFACT",
    ]);
    let mut damaged = Vec::new();
    for listed in &listing {
        let m = match listed {
            Listed::Valid(m) => m,
            Listed::Damaged { key, reason } => {
                damaged.push((key, reason));
                table.add_row(vec![
                    Cell::new("-"),
                    Cell::new("-"),
                    Cell::new("-"),
                    Cell::new("-"),
                    Cell::new("-"),
                    Cell::new("DAMAGED"),
                    Cell::new(key),
                ]);
                continue;
            }
        };
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
    for (key, reason) in damaged {
        outln!("damaged: {key}: {reason} (never restored, verified or pruned)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn prune(
    settings: &Settings,
    backup_type: Option<BackupType>,
    target: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let types = match backup_type {
        Some(t) => vec![t],
        None => vec![BackupType::Database, BackupType::Media],
    };
    let storage = Storage::new(&settings.storage);
    let policy = settings.storage.retention();
    for t in settings.targets(&types, target)? {
        let plan = retention::plan_target(
            &storage,
            &policy,
            settings.timezone.0,
            t.backup_type(),
            t.name(),
        )
        .await?;
        // Deleted first, then told: a closed pipe (`| head`) must not stop
        // the pruning half-way, or leave it undone.
        let deleted = if dry_run {
            0
        } else {
            retention::apply(&storage, &plan, t.backup_type(), t.name())
                .await?
                .len()
        };
        outln!(
            "{} {}: keep {}, {} {} (periods in {})",
            t.backup_type(),
            t.name(),
            plan.keep.len(),
            if dry_run { "would delete" } else { "deleted" },
            if dry_run { plan.delete.len() } else { deleted },
            settings.timezone.0.name()
        );
        for kept in &plan.keep {
            outln!(
                "  keep    {}  kept: {}",
                kept.manifest.artifact,
                kept.reasons.join(", ")
            );
        }
        for gone in &plan.delete {
            outln!("  delete  {}", gone.artifact);
        }
    }
    Ok(ExitCode::SUCCESS)
}

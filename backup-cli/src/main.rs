//! backup-cli: the operator's tool. Parses arguments, loads the config and
//! calls backup-core; every command prints a table or JSON.

mod artifacts;
mod backup_cmd;
mod config_cmd;
mod dashboard_cmd;
mod docs_cmd;
mod notify_cmd;
mod output;
mod restore_cmd;
mod runs;
mod schedules;
mod trigger;
mod verify_cmd;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use backup_core::{config, telemetry};
use clap::{CommandFactory, Parser, Subcommand};
use output::outln;

/// Scheduled database and media backups: run them, inspect their history,
/// clean up.
#[derive(Debug, Parser)]
#[command(name = "backup-cli", version, about, propagate_version = true)]
struct Cli {
    /// Config file [default: $BACKUP_CONFIG, else ./backup.toml].
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration or print an example.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Create or upgrade the run-history schema (safe to run twice).
    Migrate,
    /// Back up now, in this process, and record the runs.
    Backup(backup_cmd::Args),
    /// Inspect and clean up run history.
    #[command(subcommand)]
    Runs(runs::Command),
    /// List the artifacts storage holds.
    #[command(subcommand)]
    Artifacts(artifacts::Command),
    /// Reconcile, list, remove and preview the backup schedules workers fire.
    #[command(subcommand)]
    Schedules(schedules::Command),
    /// Enqueue a backup for the workers (needs [queue]).
    Trigger(trigger::Args),
    /// Restore a backup into a database or a directory, checking it on the way.
    #[command(subcommand)]
    Restore(restore_cmd::Command),
    /// Check artifacts in storage: size, sha256, and that their format reads.
    Verify(verify_cmd::Args),
    /// Check mail and webhook notifications.
    #[command(subcommand)]
    Notify(notify_cmd::Command),
    /// Set up the web dashboard's users and tokens.
    #[command(subcommand)]
    Dashboard(dashboard_cmd::Command),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs_cmd::CompletionsArgs),
    /// Write the manual pages of backup-cli and its commands into a directory.
    Man(docs_cmd::ManArgs),
}

fn main() -> ExitCode {
    backup_core::init_process();
    let cli = Cli::parse();
    // Run outcomes are printed from each report; the runner's own log lines
    // (meant for the worker's log) would only repeat them.
    let filter = match cli.verbose {
        0 => "warn,backup_core::backup=off,backup_core::jobs=off,backup_core::restore=off",
        1 => "info",
        _ => "debug",
    };
    telemetry::init(telemetry::LogFormat::Human, filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// The error and each cause on its own line, skipping causes whose text the
/// line before already contains.
fn print_error(e: &anyhow::Error) {
    let mut last = e.to_string();
    eprintln!("error: {last}");
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            eprintln!("  caused by: {text}");
        }
        last = text;
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let load = || config::load(cli.config.as_deref()).context("cannot load the configuration");
    match cli.command {
        Command::Config(cmd) => config_cmd::run(cmd, cli.config.as_deref()),
        Command::Dashboard(cmd) => dashboard_cmd::run(cmd),
        Command::Completions(args) => docs_cmd::completions(&args, Cli::command()),
        Command::Man(args) => docs_cmd::man(&args, Cli::command()),
        Command::Migrate => {
            let loaded = load()?;
            let history =
                backup_core::history::History::connect(&loaded.settings.history.url).await?;
            let applied = history.migrate().await?;
            outln!(
                "run history {}: {applied} migration(s) applied, schema up to date",
                history.url()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => backup_cmd::run(args, load()?.settings).await,
        Command::Runs(cmd) => runs::run(cmd, load()?.settings).await,
        Command::Artifacts(cmd) => artifacts::run(cmd, load()?.settings).await,
        Command::Schedules(cmd) => schedules::run(cmd, load()?.settings).await,
        Command::Trigger(args) => trigger::run(args, load()?.settings).await,
        Command::Restore(cmd) => restore_cmd::run(cmd, load()?.settings).await,
        Command::Verify(args) => verify_cmd::run(args, load()?.settings).await,
        Command::Notify(cmd) => notify_cmd::run(cmd, load()?.settings).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

//! `config check` and `config example`.

use std::{path::Path, process::ExitCode};

use anyhow::Context as _;
use backup_core::config;
use clap::Subcommand;

use crate::output::outln;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and print it, secrets masked.
    Check,
    /// Print a fully commented example configuration.
    Example,
}

pub fn run(cmd: Command, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check => {
            let loaded = config::load(path).context("configuration is invalid")?;
            match &loaded.file {
                Some(file) => eprintln!("configuration OK: {}", file.display()),
                None => eprintln!(
                    "configuration OK: no {} found, using defaults and {}* environment variables",
                    config::DEFAULT_CONFIG_FILE,
                    config::ENV_PREFIX
                ),
            }
            let storage = &loaded.settings.storage;
            eprintln!(
                "retention: keeps {} of each target{}",
                storage.retention(),
                if storage.keep.is_none() {
                    " (storage.keep unset)"
                } else {
                    ""
                }
            );
            outln!("{}", loaded.settings.to_redacted_toml().trim_end());
        }
        Command::Example => outln!("{}", config::EXAMPLE.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}

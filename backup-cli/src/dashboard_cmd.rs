//! `dashboard hash-password`: the Argon2id hash of a password or token for
//! `[[dashboard.users]]` or `[[dashboard.tokens]]`.

use std::{
    io::{BufRead, IsTerminal},
    process::ExitCode,
};

use anyhow::{Context as _, bail};
use backup_core::password;
use clap::Subcommand;

use crate::output::outln;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a password or token from stdin (one line) and print its
    /// Argon2id hash, for `password_hash` or `token_hash`. On a terminal it
    /// asks twice, without echo.
    HashPassword,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::HashPassword => {
            let secret = if std::io::stdin().is_terminal() {
                let first =
                    rpassword::prompt_password("Password: ").context("cannot read the password")?;
                let again =
                    rpassword::prompt_password("Again: ").context("cannot read the password")?;
                if first != again {
                    bail!("the two passwords differ; nothing printed");
                }
                first
            } else {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read stdin")?;
                line.trim_end_matches(['\n', '\r']).to_string()
            };
            if secret.is_empty() {
                bail!(
                    "the password is empty; give it on stdin, e.g. `backup-cli dashboard hash-password < password.txt`"
                );
            }
            if secret.chars().count() < 8 {
                eprintln!("warning: a password under 8 characters is easy to guess");
            }
            let hash = password::hash_secret(&secret).map_err(anyhow::Error::msg)?;
            outln!("{hash}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

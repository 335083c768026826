//! `completions` and `man`: the shell completion scripts and manual pages,
//! generated from the same argument definitions the program parses.

use std::{
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use clap_complete::Shell;

use crate::output::outln;

/// `backup-cli completions SHELL`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// `backup-cli man DIR`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write the pages (created if missing), e.g.
    /// /usr/local/share/man/man1.
    #[arg(value_name = "DIR")]
    out: PathBuf,
}

/// Prints the completion script of `cmd` for the shell.
pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "backup-cli", &mut script);
    if args.shell == Shell::Bash {
        // clap_complete 4.6 spells the bin name's hyphen two ways in bash
        // (the dispatch loop says `backup__cli__subcmd__restore`, the case
        // arms `backup__subcmd__cli__subcmd__restore`), so nothing after a
        // subcommand completed (clap-rs/clap#6421, fix not yet released).
        script = String::from_utf8_lossy(&script)
            .replace("backup__subcmd__cli", "backup__cli")
            .into_bytes();
    }
    match io::stdout().write_all(&script) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the script")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Writes `backup-cli.1` and a page per command (`backup-cli-restore.1`,
/// `backup-cli-restore-database.1`, ...).
pub fn man(args: &ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    // Directories this creates are for every user too (0755), not 0700.
    let missing: Vec<_> = args.out.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for dir in missing {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} readable", dir.display()))?;
    }
    clap_mangen::generate_to(cmd, &args.out)
        .with_context(|| format!("cannot write the manual pages into {}", args.out.display()))?;
    let mut pages: Vec<_> = std::fs::read_dir(&args.out)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backup-cli") && n.ends_with(".1"))
        .collect();
    pages.sort();
    // Pages are for every user of the host; this process's umask (0077,
    // for artifacts) would leave them readable by root alone.
    for page in &pages {
        let path = args.out.join(page);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} readable", path.display()))?;
    }
    outln!(
        "wrote {} manual page(s) into {}",
        pages.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

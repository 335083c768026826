//! `restore database|media|list`: bring a backup back, after checking it.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
};

use backup_core::{
    config::{DatabaseSource, Settings},
    context::Context,
    history::RestoreRun,
    model::RunStatus,
    pipeline::Progress,
    restore::{self, DatabaseOptions, DatabaseRequest, MediaRequest, RestoreReport},
};

use comfy_table::Cell;

use crate::output::{self, outln};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Restore a database backup (into its own database, or --into another).
    Database(DatabaseArgs),
    /// Restore a media backup into a directory.
    Media(MediaArgs),
    /// Past restores, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The age identity an encrypted artifact is opened with.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArg {
    /// age identity file (`age-keygen -o FILE`) that opens encrypted
    /// artifacts; default: encryption.identity_file.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

impl IdentityArg {
    /// `settings` with this identity, when one was given.
    pub fn apply(&self, mut settings: Settings) -> Settings {
        if let Some(file) = &self.identity {
            settings.encryption.identity_file = Some(file.clone());
        }
        settings
    }
}

#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    #[command(flatten)]
    request: DatabaseRequest,
    #[command(flatten)]
    identity: IdentityArg,
    /// Print the restore record as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MediaArgs {
    #[command(flatten)]
    request: MediaRequest,
    #[command(flatten)]
    identity: IdentityArg,
    /// Print the restore record as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let settings = match &cmd {
        Command::Database(args) => args.identity.apply(settings),
        Command::Media(args) => args.identity.apply(settings),
        Command::List { .. } => settings,
    };
    let ctx = Context::open(settings).await?;
    match cmd {
        Command::Database(args) => database(&ctx, args).await,
        Command::Media(args) => media(&ctx, args).await,
        Command::List { limit, json } => {
            let restores = ctx.history.restores(limit).await?;
            if json {
                output::json(&restores)?;
            } else if restores.is_empty() {
                outln!("no restores recorded");
            } else {
                let mut table = output::table(&[
                    "ID", "STARTED", "KIND", "STATUS", "TYPE", "TARGET", "FROM RUN", "INTO",
                    "ERROR",
                ]);
                for r in &restores {
                    table.add_row(vec![
                        Cell::new(r.id),
                        Cell::new(output::time(r.started_at, ctx.settings.timezone)),
                        Cell::new(r.kind),
                        output::status_cell(r.status),
                        Cell::new(r.backup_type),
                        Cell::new(&r.target),
                        Cell::new(r.source_run_id.map_or("-".into(), |id| id.to_string())),
                        Cell::new(&r.destination),
                        Cell::new(&r.error_message),
                    ]);
                }
                outln!("{table}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn database(ctx: &Context, args: DatabaseArgs) -> anyhow::Result<ExitCode> {
    let request = &args.request;
    if let Some(url) = &request.into
        && std::env::var_os("BACKUP_RESTORE_INTO").is_none()
        && DatabaseSource::parse(url).is_ok_and(|source| source.has_password())
    {
        eprintln!(
            "warning: the --into URL holds a password, which other users can see in the process \
             list; prefer BACKUP_RESTORE_INTO=URL"
        );
    }
    let plan = restore::plan_database(ctx, request).await?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    let mut replace = request.yes;
    if plan.existing_tables > 0 && !replace && std::io::stdin().is_terminal() {
        replace = confirm(&format!(
            "{} has {} table(s). Restoring {} (run {}) replaces the tables it holds. Continue? [y/N] ",
            plan.shown, plan.existing_tables, plan.manifest.artifact, plan.manifest.run_id
        ))?;
        if !replace {
            eprintln!("restore cancelled; nothing was changed");
            return Ok(ExitCode::FAILURE);
        }
    }
    let options = DatabaseOptions {
        replace,
        no_owner: request.no_owner,
    };
    let progress = Progress::default();
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        output::spinner(
            &format!("restore {}", plan.manifest.target),
            progress.clone(),
        )
    });
    let report = restore::run_database(ctx, &plan, options, progress).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    finish(ctx, report?, args.json, "tables")
}

async fn media(ctx: &Context, args: MediaArgs) -> anyhow::Result<ExitCode> {
    let plan = restore::plan_media(ctx, &args.request).await?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    let progress = Progress::default();
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        output::spinner(
            &format!("restore {}", plan.manifest.target),
            progress.clone(),
        )
    });
    let report = restore::run_media(ctx, &plan, args.request.force, progress).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    finish(ctx, report?, args.json, "files")
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

fn finish(
    ctx: &Context,
    report: RestoreReport,
    json: bool,
    items: &str,
) -> anyhow::Result<ExitCode> {
    let run = &report.run;
    if json {
        output::json(run)?;
    } else {
        print(ctx, run, items);
    }
    if run.status == RunStatus::Success {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: restore failed: {}", run.error_message);
        Ok(ExitCode::FAILURE)
    }
}

fn print(ctx: &Context, run: &RestoreRun, items: &str) {
    let ok = run.status == RunStatus::Success;
    outln!(
        "{} {} {}: {} (restore {}, {:.2} s)",
        run.backup_type,
        run.target,
        if ok { "restored" } else { "restore FAILED" },
        run.destination,
        run.id,
        run.duration_seconds.unwrap_or_default()
    );
    outln!(
        "  from      run {} ({})",
        run.source_run_id.map_or("-".into(), |id| id.to_string()),
        run.artifact
    );
    if ok {
        outln!("  {items:<9} {}", run.items.unwrap_or_default());
        let bytes = run.bytes.unwrap_or_default().max(0) as u64;
        outln!("  bytes     {} ({bytes} bytes)", output::bytes(bytes));
        outln!(
            "  at        {}",
            output::time(run.started_at, ctx.settings.timezone)
        );
    } else {
        outln!("  error     {}", run.error_message);
    }
}

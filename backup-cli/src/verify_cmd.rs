//! `verify`: prove artifacts in storage whole and readable.

use std::process::ExitCode;

use backup_core::{
    backup::Context,
    config::Settings,
    restore::{self, Scope},
};

use crate::output::{self, outln};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The artifact of this backup run.
    #[arg(long, value_name = "ID", conflicts_with_all = ["latest", "all"])]
    run: Option<i64>,
    /// The newest artifact of each target (the default).
    #[arg(long, conflicts_with = "all")]
    latest: bool,
    /// Every artifact in storage.
    #[arg(long)]
    all: bool,
    /// Only this target's artifacts.
    #[arg(long, short)]
    target: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let ctx = Context::open(settings).await?;
    let scope = match (args.run, args.all) {
        (Some(id), _) => Scope::Run(id),
        (None, true) => Scope::All,
        (None, false) => Scope::Latest,
    };
    let results = restore::verify(&ctx, &scope, args.target.as_deref()).await?;
    if args.json {
        output::json(&results)?;
    } else {
        for r in &results {
            let run = r.run_id.map_or("-".into(), |id| id.to_string());
            let status = if r.ok { "ok    " } else { "FAILED" };
            outln!(
                "{status}  {} {}  run {run}  {}",
                r.backup_type,
                r.target,
                r.artifact
            );
            outln!("        {}", r.detail);
        }
    }
    let bad: Vec<&str> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.artifact.as_str())
        .collect();
    if bad.is_empty() {
        if !args.json {
            outln!("{} artifact(s) verified", results.len());
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} of {} artifact(s) failed verification: {}",
            bad.len(),
            results.len(),
            bad.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

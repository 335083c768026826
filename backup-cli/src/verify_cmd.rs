//! `verify`: prove artifacts in storage whole and readable.

use std::process::ExitCode;

use backup_core::{
    backup::Context,
    config::{DatabaseSource, Settings},
    history::{BackupType, RunStatus},
    pipeline::Progress,
    restore::{self, Pick, Scope, Verified},
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
    /// Restore drill: restore the artifact into a scratch database created
    /// for it, count the rows of each table, and drop it again.
    #[arg(long, requires = "target", conflicts_with = "all")]
    restore_test: bool,
    /// The drill's scratch database; it must not exist. Default: the
    /// engine's `verify_scratch`, or a temporary file for SQLite. A URL with
    /// a password is better given as BACKUP_VERIFY_SCRATCH.
    #[arg(
        long,
        value_name = "URL",
        env = "BACKUP_VERIFY_SCRATCH",
        hide_env_values = true,
        requires = "restore_test"
    )]
    scratch: Option<String>,
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
    if args.restore_test {
        return drill(&ctx, &args, &results).await;
    }
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

/// `--restore-test`: the chosen artifact must verify, then restore into a
/// scratch database that is dropped afterwards.
async fn drill(ctx: &Context, args: &Args, results: &[Verified]) -> anyhow::Result<ExitCode> {
    let [result] = results else {
        anyhow::bail!("a restore drill takes one artifact; choose it with --target (and --run)");
    };
    if !result.ok {
        eprintln!(
            "error: {} failed verification, so it is not drilled: {}",
            result.artifact, result.detail
        );
        return Ok(ExitCode::FAILURE);
    }
    if result.backup_type != BackupType::Database {
        anyhow::bail!(
            "restore drills are for database backups; `verify` already reads every entry of a media archive"
        );
    }
    // By key: the run may have left history while its artifact is kept.
    let manifest = restore::find(
        ctx,
        BackupType::Database,
        Some(&result.target),
        &Pick::Artifact(result.artifact.clone()),
    )
    .await?;
    let run_id = manifest.run_id;
    let temp = tempfile_dir()?;
    let scratch = match &args.scratch {
        Some(url) => match DatabaseSource::parse(url).map_err(anyhow::Error::msg)? {
            DatabaseSource::Sqlite { path } => DatabaseSource::Sqlite {
                path: std::path::absolute(path)?,
            },
            other => other,
        },
        None if manifest.engine == "sqlite" => DatabaseSource::Sqlite {
            path: temp.join("drill.sqlite3"),
        },
        None => ctx
            .settings
            .verify_scratch
            .iter()
            .find(|s| s.0.engine() == manifest.engine)
            .map(|s| s.0.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no scratch database for {}: pass --scratch URL (one the drill may create and drop) or set verify_scratch",
                    manifest.engine
                )
            })?,
    };
    let drill = restore::drill(ctx, &manifest, &scratch, Progress::default()).await?;
    let _ = std::fs::remove_dir_all(&temp);
    let run = &drill.report.run;
    if args.json {
        let tables: serde_json::Map<String, serde_json::Value> = drill
            .tables
            .iter()
            .map(|(name, rows)| (name.clone(), (*rows).into()))
            .collect();
        output::json(&serde_json::json!({
            "verified": result,
            "drill": run,
            "tables": tables,
        }))?;
    } else {
        outln!(
            "drill  {} {}  run {run_id}  into {} (created, then dropped)",
            result.backup_type,
            result.target,
            run.destination
        );
        for (name, rows) in &drill.tables {
            outln!("  {name:<30} {rows:>12} rows");
        }
        outln!(
            "restore {}: {} in {:.2} s",
            run.id,
            run.status,
            run.duration_seconds.unwrap_or_default()
        );
    }
    if run.status == RunStatus::Success {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: restore drill failed: {}", run.error_message);
        Ok(ExitCode::FAILURE)
    }
}

/// A private temporary directory for a SQLite drill.
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("backup-drill-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

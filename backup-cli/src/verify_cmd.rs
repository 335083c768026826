//! `verify`: prove artifacts in storage whole and readable.

use std::process::ExitCode;

use backup_core::{
    config::Settings,
    context::Context,
    model::RunStatus,
    pipeline::Progress,
    restore::{self, Verified, VerifyRequest},
};

use crate::{
    output::{self, outln},
    restore_cmd::IdentityArg,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    request: VerifyRequest,
    #[command(flatten)]
    identity: IdentityArg,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let ctx = Context::open(args.identity.apply(settings)).await?;
    let request = &args.request;
    let results = restore::verify(&ctx, &request.scope(), request.target.as_deref()).await?;
    if request.restore_test {
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
    let scratch = args.request.scratch.as_deref();
    let Some(drill) = restore::drill_verified(ctx, result, scratch, Progress::default()).await?
    else {
        anyhow::bail!(
            "no scratch database for {}: pass --scratch URL (one the drill may create and drop) or set verify_scratch",
            result.engine.as_deref().unwrap_or("this engine")
        );
    };
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
            "drill  {} {}  run {}  into {} (created, then dropped)",
            result.backup_type,
            result.target,
            run.source_run_id.map_or("-".into(), |id| id.to_string()),
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

//! backup-worker: the long-running process. Wiring only: config, telemetry,
//! history, the apalis `Monitor` with its Redis workers (or, without a
//! queue, in-process execution), the cron side, the HTTP surface of
//! `backup-web` (dashboard, `/healthz`, `/metrics`),
//! and graceful shutdown on SIGTERM/SIGINT.

mod single;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use apalis::prelude::{BackendExt, Monitor, ParallelizeExt, WorkerBuilder, WorkerBuilderExt};
use apalis_redis::RedisStorage;
use backup_core::{
    config::{self, QueueSettings},
    context::{self, Context},
    health::Health,
    jobs::{RetryLayer, Runner, backup_handler, chore_handler},
    lock::Locks,
    queue::{self, Queue, Wakes},
    scheduler::{self, RedisDispatch},
    telemetry,
};
use clap::{CommandFactory, Parser, ValueEnum};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

/// Runs scheduled backups: fires the stored schedules and works the backup
/// queues. Start one per host, or several replicas on one Redis.
#[derive(Debug, Parser)]
#[command(name = "backup-worker", version, about)]
struct Args {
    /// Config file [default: $BACKUP_CONFIG, else ./backup.toml].
    #[arg(long, short, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format: JSON lines on stdout (for log collectors) or text on stderr.
    #[arg(long, value_enum, default_value = "json")]
    log_format: Format,
    /// Print this program's manual page (roff) and exit:
    /// `backup-worker --man-page > backup-worker.1`.
    #[arg(long, hide = true)]
    man_page: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Human,
}

fn main() -> ExitCode {
    backup_core::init_process();
    let args = Args::parse();
    if args.man_page {
        return man_page();
    }
    let format = match args.log_format {
        Format::Json => telemetry::LogFormat::Json,
        Format::Human => telemetry::LogFormat::Human,
    };
    // apalis' monitor logs each worker restart; ours says it once, with
    // the reason, and stays quiet through a Redis outage.
    telemetry::init(format, "info,apalis_core::monitor=error");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            tracing::error!(error = %chain.join(": "), "backup-worker stopped");
            ExitCode::FAILURE
        }
    }
}

/// The manual page, from the same definitions the arguments are parsed with.
fn man_page() -> ExitCode {
    let mut page = Vec::new();
    let written = clap_mangen::Man::new(Args::command())
        .render(&mut page)
        .and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &page));
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the manual page: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let loaded = config::load(args.config.as_deref()).context("cannot load the configuration")?;
    let settings = loaded.settings;
    let ctx = Context::open(settings.clone()).await?;
    ctx.notifier.log_setup();
    let metrics = backup_web::install_metrics();
    let health = Health::new(ctx.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = async move {
        let result = shutdown_signal().await;
        tracing::info!("shutdown requested: no new jobs; running backups may finish");
        let _ = stop_tx.send(true);
        result
    };
    match &settings.queue {
        Some(queue_settings) => {
            run_queue(ctx, queue_settings, health, metrics, stop_rx, signal).await
        }
        None => single::run(ctx, health, metrics, stop_rx, signal).await,
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        r = tokio::signal::ctrl_c() => r,
    }
}

/// Queue mode: apalis workers on Redis plus the cron side.
async fn run_queue(
    ctx: Context,
    settings: &QueueSettings,
    health: Health,
    metrics: Option<PrometheusHandle>,
    stop: watch::Receiver<bool>,
    signal: impl Future<Output = std::io::Result<()>> + Send,
) -> anyhow::Result<()> {
    let queue = Queue::connect(settings).await?;
    let worker = &ctx.settings.worker;
    let heartbeat = Duration::from_secs(worker.heartbeat_seconds);
    let grace = Duration::from_secs(worker.shutdown_grace_seconds);
    let runner = Arc::new(Runner::new(
        ctx.clone(),
        Locks::Redis(queue.clone()),
        Some(queue.clone()),
    ));
    // Unique per process and per restart: apalis refuses a name that is
    // still registered, and two replicas must never share one.
    let base = context::worker_id().replace(':', "-");
    tracing::info!(queue = %queue.url(), namespace = %queue.namespace(), worker = %base, "starting queue workers");

    let wakes = Wakes::default();
    let mut monitor = Monitor::new();
    for kind in [queue::DATABASE, queue::MEDIA] {
        let (queue, runner, base, wakes) =
            (queue.clone(), runner.clone(), base.clone(), wakes.clone());
        monitor = monitor.register(move |restarts| {
            let storage = RedisStorage::new(queue.connection())
                .with_config(queue.storage_config(kind, heartbeat))
                .poll_with_strategy(wakes.strategy(kind));
            // The handler runs one attempt; the retry layer settles it, and
            // schedules a retry as a later delivery, so the worker takes
            // other jobs meanwhile.
            WorkerBuilder::new(format!("{base}:{kind}:{restarts}"))
                .backend(storage)
                .concurrency(1)
                .parallelize(tokio::spawn)
                .layer(RetryLayer::new(runner.clone(), queue.clone()))
                .catch_panic()
                .data(runner.clone())
                .build(backup_handler)
        });
    }
    {
        let (queue, runner, base, wakes) =
            (queue.clone(), runner.clone(), base.clone(), wakes.clone());
        monitor = monitor.register(move |restarts| {
            let storage = RedisStorage::new(queue.connection())
                .with_config(queue.storage_config(queue::MAINTENANCE, heartbeat))
                .poll_with_strategy(wakes.strategy(queue::MAINTENANCE));
            WorkerBuilder::new(format!("{base}:{}:{restarts}", queue::MAINTENANCE))
                .backend(storage)
                .concurrency(1)
                .parallelize(tokio::spawn)
                .catch_panic()
                .data(runner.clone())
                .build(chore_handler)
        });
    }
    let events = health.clone();
    let outage = queue.clone();
    let monitor = monitor
        .should_restart(move |ctx, error| {
            // While Redis is away the connection says so, once; the
            // restarts it causes (each waits for the connection's backoff)
            // are not news.
            if outage.is_down() {
                tracing::debug!(worker = ctx.name(), error = %error, "queue worker stopped; restarting it");
            } else {
                tracing::warn!(worker = ctx.name(), error = %error, "queue worker stopped; restarting it");
            }
            true
        })
        .on_event(move |ctx, event| events.on_worker_event(ctx.name(), event))
        .shutdown_timeout(grace);

    health.set_queue(queue.clone(), 3);
    let dispatch = RedisDispatch::new(queue, wakes);
    let launcher = backup_web::Launcher::Queue(Box::new(dispatch.clone()));
    let http = backup_web::serve(backup_web::web(
        ctx.clone(),
        health.clone(),
        metrics,
        launcher,
    ))
    .await?;
    let stopping = stop.clone();
    let mut cron = tokio::spawn(scheduler::run(ctx.clone(), dispatch, health, stop));
    let workers = monitor.run_with_signal(signal);
    tokio::pin!(workers);
    let result = tokio::select! {
        result = &mut workers => result,
        ended = &mut cron => {
            // The scheduler only returns on shutdown; anything else (a panic)
            // must not leave a process that no longer fires schedules.
            if !*stopping.borrow() {
                anyhow::bail!("the scheduler stopped unexpectedly ({ended:?}); exiting so the process is restarted");
            }
            workers.await
        }
    };
    cron.abort();
    if let Some(http) = http {
        http.abort();
    }
    result.context("queue workers failed")?;
    tracing::info!("backup-worker stopped");
    Ok(())
}

//! Logging set-up, once per process: human text on stderr for the CLI (so
//! stdout stays clean for `--json`), JSON lines on stdout for the worker.

use tracing_subscriber::{
    EnvFilter, Layer, filter::dynamic_filter_fn, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::queue::outage;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text on stderr.
    Human,
    /// One JSON object per line on stdout.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
///
/// While Redis is away, apalis' own lines (each poll, heartbeat and
/// worker restart fails) are left out: the connection reports the outage
/// in a few lines of its own.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Asked at each event (the state changes), not once per call site.
    let quiet_in_outage = dynamic_filter_fn(|meta, _| {
        !(meta.target().starts_with("apalis") && outage::redis_is_down())
    });
    let layer = match format {
        LogFormat::Human => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .without_time()
            .boxed(),
        LogFormat::Json => fmt::layer().json().with_current_span(true).boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(quiet_in_outage))
        .try_init();
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

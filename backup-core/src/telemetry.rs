//! Logging set-up, once per process: human text on stderr for the CLI (so
//! stdout stays clean for `--json`), JSON lines on stdout for the worker.

use tracing_subscriber::{EnvFilter, fmt};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text on stderr.
    Human,
    /// One JSON object per line on stdout.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let result = match format {
        LogFormat::Human => fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .without_time()
            .try_init(),
        LogFormat::Json => fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

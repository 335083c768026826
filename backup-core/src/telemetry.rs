//! Logging set-up, once per process: human text on stderr for the CLI (so
//! stdout stays clean for `--json`), JSON lines on stdout for the worker.

use std::io::{self, Write};

use tracing_subscriber::{
    EnvFilter, Layer, filter::dynamic_filter_fn, fmt, fmt::MakeWriter, layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::{queue::outage, redact};

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
            .with_writer(Scrubbed(io::stderr))
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .without_time()
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(Scrubbed(io::stdout))
            .boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(quiet_in_outage))
        .try_init();
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Log output with every known secret masked (see [`redact::register`]):
/// whatever a dependency prints at whatever level, e.g. OpenDAL's debug
/// view of its credential provider.
struct Scrubbed<F>(F);

impl<'a, F, W> MakeWriter<'a> for Scrubbed<F>
where
    F: Fn() -> W + 'static,
    W: Write,
{
    type Writer = Line<W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            buf: Vec::with_capacity(256),
            out: (self.0)(),
        }
    }
}

/// One log event, held until it is complete so that a secret split across
/// two writes is still seen whole, then scrubbed and written at once.
struct Line<W: Write> {
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> Write for Line<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        self.out.write_all(redact::scrub(&text).as_bytes())?;
        self.buf.clear();
        self.out.flush()
    }
}

impl<W: Write> Drop for Line<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_at_any_level_never_carry_a_registered_secret() {
        redact::register("Tr4ce-level-secret");
        let sink = Sink::default();
        let out = sink.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .json()
                .with_writer(Scrubbed(move || out.clone()))
                .with_filter(EnvFilter::new("trace")),
        );
        tracing::subscriber::with_default(subscriber, || {
            #[derive(Debug)]
            #[allow(dead_code)]
            struct Provider {
                secret_access_key: String,
            }
            let provider = Provider {
                secret_access_key: "Tr4ce-level-secret".into(),
            };
            tracing::trace!(?provider, "credential provider");
            tracing::debug!(key = "Tr4ce-level-secret", "as a field");
        });
        let logged = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("credential provider"), "{logged}");
        assert!(!logged.contains("Tr4ce"), "{logged}");
        assert!(logged.contains(redact::MASK), "{logged}");
    }
}

//! Riding out a Redis outage: every command of this process goes through a
//! [`Gated`] connection which, once Redis has failed to answer, waits
//! before each further try (1 s, doubling to 10 s), so restarting queue
//! workers and the scheduler do not spin, and which says so in a few log
//! lines: the first failure, "still unreachable" once a minute, and
//! "reachable again" with how long it was away.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::{
    Cmd, Pipeline, RedisError, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager},
};
use tokio::time::Instant;

/// The longest wait between tries while Redis is away: also how late a
/// worker may notice that it is back.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// How often an ongoing outage is logged again.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Whether Redis is away, since when, and what was last said about it.
#[derive(Debug, Default)]
struct State {
    /// Tries that failed in a row.
    failures: u32,
    /// When the outage began (the first failure in a row).
    since: Option<(Instant, chrono::DateTime<chrono::Utc>)>,
    /// When the outage was last logged.
    reported: Option<Instant>,
}

/// The outage state a process shares among its connections.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<Mutex<State>>);

impl Outage {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether Redis failed to answer the last try.
    pub fn is_down(&self) -> bool {
        self.state().failures > 0
    }

    /// How long to wait before the next try: nothing while Redis answers.
    fn wait(&self) -> Duration {
        match self.state().failures {
            0 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 1).min(4)).min(MAX_WAIT),
        }
    }

    fn failed(&self, url: &str, error: &RedisError) {
        let now = Instant::now();
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        match state.since {
            None => {
                state.since = Some((now, chrono::Utc::now()));
                state.reported = Some(now);
                DOWN.store(true, Ordering::Relaxed);
                tracing::error!(queue = url, %error, "Redis is unreachable; trying again with backoff");
            }
            Some((_, since)) => {
                if state
                    .reported
                    .is_none_or(|r| now.duration_since(r) >= REPORT_EVERY)
                {
                    state.reported = Some(now);
                    tracing::warn!(queue = url, %since, %error, "Redis is still unreachable");
                }
            }
        }
    }

    fn answered(&self, url: &str) {
        let mut state = self.state();
        if let Some((began, _)) = state.since.take() {
            DOWN.store(false, Ordering::Relaxed);
            tracing::info!(
                queue = url,
                down_seconds = began.elapsed().as_secs(),
                "Redis is reachable again"
            );
        }
        state.failures = 0;
        state.reported = None;
    }
}

/// Whether this process's Redis is away, for the log filter.
static DOWN: AtomicBool = AtomicBool::new(false);

/// Whether this process's Redis connection is in an outage: the log leaves
/// out apalis' per-try lines meanwhile.
pub fn redis_is_down() -> bool {
    DOWN.load(Ordering::Relaxed)
}

/// Whether an error means Redis is away, rather than a refused command.
fn unreachable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
}

/// A Redis connection that waits out an outage (see the module docs).
#[derive(Clone)]
pub struct Gated {
    inner: ConnectionManager,
    outage: Outage,
    /// The queue URL, redacted, for log lines.
    url: Arc<str>,
}

impl Gated {
    /// Gates `inner`; `outage` is shared with the process's other
    /// connections.
    pub fn new(inner: ConnectionManager, outage: Outage, url: &str) -> Self {
        Self {
            inner,
            outage,
            url: url.into(),
        }
    }

    fn observe<T>(&self, result: &Result<T, RedisError>) {
        match result {
            Ok(_) => self.outage.answered(&self.url),
            Err(e) if unreachable(e) => self.outage.failed(&self.url, e),
            Err(_) => {}
        }
    }
}

impl std::fmt::Debug for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated")
            .field("url", &self.url)
            .field("down", &self.outage.is_down())
            .finish()
    }
}

impl ConnectionLike for Gated {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            tokio::time::sleep(self.outage.wait()).await;
            let result = self.inner.req_packed_command(cmd).await;
            self.observe(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            tokio::time::sleep(self.outage.wait()).await;
            let result = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.observe(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

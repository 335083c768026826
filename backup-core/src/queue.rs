//! The Redis side shared by the worker and the CLI: connecting, queue names,
//! pushing jobs with idempotency keys, per-target locks, job results.
//!
//! Jobs are apalis-redis tasks (JSON payloads) so the worker's apalis
//! `Monitor` consumes them; locks and results are plain keys under the same
//! namespace. Every command goes through one [`outage::Gated`] connection,
//! which rides out an outage with backoff and few log lines.

pub mod outage;

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use apalis::prelude::{Strategy, TaskBuilder, TaskId};
use futures_util::{Stream, task::AtomicWaker};
use redis::{AsyncCommands, Client, Script, aio::ConnectionManagerConfig};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use self::outage::{Gated, Outage};
use crate::{
    config::QueueSettings,
    model::{BackupType, RunStatus},
    redact,
};

/// Queue of database backup jobs (within the namespace).
pub const DATABASE: &str = "database";
/// Queue of media backup jobs.
pub const MEDIA: &str = "media";
/// Queue of maintenance jobs.
pub const MAINTENANCE: &str = "maintenance";

/// How often an idle worker asks Redis for jobs nobody woke it for: pushed
/// by `backup-cli trigger`, or by another replica whose worker is busy.
/// (apalis would otherwise look only at each heartbeat.)
pub const POLL: Duration = Duration::from_secs(1);

/// How long idempotency keys and job results are kept: longer than any
/// catch-up window, so a fire time is never enqueued twice.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// The queue of a backup type.
pub fn backup_queue(backup_type: BackupType) -> &'static str {
    match backup_type {
        BackupType::Database => DATABASE,
        BackupType::Media => MEDIA,
    }
}

/// Queue failures. Messages never carry the Redis password.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached.
    #[error("cannot reach the queue at {url}: {reason}; check queue.url and that Redis is running")]
    Connect {
        /// Queue URL (redacted).
        url: String,
        /// Why.
        reason: String,
    },
    /// A Redis command failed.
    #[error("queue operation failed ({what}): {reason}")]
    Redis {
        /// What was being done.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// A job's final result, kept in Redis for `trigger --wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// `success` or `failed`.
    pub status: RunStatus,
    /// The last run of the job, when one was recorded.
    pub run_id: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A connection to the shared queue.
#[derive(Clone)]
pub struct Queue {
    conn: Gated,
    outage: Outage,
    namespace: String,
    url: String,
    password: Option<String>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("url", &self.url)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Queue {
    /// Connects to `queue.url`. The connection reconnects by itself; its
    /// timeouts are generous so that a slow reply does not stop a worker.
    ///
    /// # Errors
    ///
    /// [`QueueError::Connect`] when Redis does not answer within 10 s.
    pub async fn connect(settings: &QueueSettings) -> Result<Self, QueueError> {
        let secret = settings.url.expose_secret();
        let url = redact::url(secret);
        let password = url::Url::parse(secret)
            .ok()
            .and_then(|u| u.password().map(str::to_string));
        let fail = |reason: String| QueueError::Connect {
            url: url.clone(),
            reason: scrub(&reason, password.as_deref()),
        };
        let client = Client::open(secret).map_err(|e| fail(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
        let outage = Outage::default();
        Ok(Self {
            conn: Gated::new(conn, outage.clone(), &url),
            outage,
            namespace: settings.namespace.clone(),
            url: url.clone(),
            password,
        })
    }

    /// The connection, for apalis storages.
    pub fn connection(&self) -> Gated {
        self.conn.clone()
    }

    /// Whether Redis failed to answer the last command: an outage, logged
    /// once by the connection (callers need not log each failure).
    pub fn is_down(&self) -> bool {
        self.outage.is_down()
    }

    /// The queue URL with secrets masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix (`queue.namespace`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The full name of queue `kind` (`{namespace}:{kind}`).
    pub fn name(&self, kind: &str) -> String {
        format!("{}:{kind}", self.namespace)
    }

    /// The apalis-redis storage config of queue `kind`: one job per fetch
    /// (so idle replicas take the rest), a worker silent for 3 heartbeats
    /// is dead and its job goes back to the queue, idempotency keys expire
    /// after a week.
    pub fn storage_config(&self, kind: &str, heartbeat: Duration) -> apalis_redis::Config {
        apalis_redis::Config::default()
            .queue(self.name(kind))
            .batch_size(1)
            .heartbeat_interval(heartbeat)
            .missed_heartbeats(3)
            .idempotency_ttl(Some(KEEP))
    }

    fn err(&self, what: &'static str) -> impl Fn(redis::RedisError) -> QueueError + '_ {
        move |e| QueueError::Redis {
            what,
            reason: scrub(&e.to_string(), self.password.as_deref()),
        }
    }

    /// Enqueues `job` on queue `kind`. With an idempotency key, a second
    /// push of the same key (from any replica, within a week) is dropped.
    /// Returns the task id, or `None` when the push was a duplicate.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn push<T: Serialize>(
        &self,
        kind: &str,
        job: &T,
        idempotency_key: Option<&str>,
    ) -> Result<Option<String>, QueueError> {
        self.push_after(kind, job, idempotency_key, Duration::ZERO)
            .await
    }

    /// Enqueues `job` on queue `kind` to start no sooner than `delay` from
    /// now (a retry's backoff): until then workers take other jobs.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn push_after<T: Serialize>(
        &self,
        kind: &str,
        job: &T,
        idempotency_key: Option<&str>,
        delay: Duration,
    ) -> Result<Option<String>, QueueError> {
        let payload = serde_json::to_vec(job).map_err(|e| QueueError::Redis {
            what: "encoding a job",
            reason: e.to_string(),
        })?;
        // Time-ordered ids: apalis-redis keeps pushes in its scheduled set,
        // scored by the second, and promotes ties in id order, so jobs of
        // one second start in the order they were pushed.
        let task_id = uuid::Uuid::now_v7().simple().to_string();
        let mut task = TaskBuilder::new(payload)
            .task_id(TaskId::from_string(task_id.clone()))
            .max_attempts(1);
        if !delay.is_zero() {
            // Due times are whole seconds: round up, so the wait is never
            // shorter than asked.
            let due = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                + delay;
            let seconds = due.as_secs() + u64::from(due.subsec_nanos() > 0);
            task = task.run_at_timestamp(seconds);
        }
        if let Some(key) = idempotency_key {
            task = task.idempotency_key(key);
        }
        let config = self.storage_config(kind, Duration::from_secs(30));
        let mut conn = self.conn.clone();
        let (queued, scheduled) =
            apalis_redis::queries::push_tasks(&mut conn, &config, &[task.build()])
                .await
                .map_err(|e| QueueError::Redis {
                    what: "pushing a job",
                    reason: scrub(&e.to_string(), self.password.as_deref()),
                })?;
        Ok((queued + scheduled > 0).then_some(task_id))
    }

    /// The workers of queue `kind` that have beaten within `within`: the
    /// ones alive (apalis keeps each worker's last heartbeat, in seconds,
    /// in the queue's workers set).
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn live_workers(
        &self,
        kind: &str,
        within: Duration,
    ) -> Result<Vec<String>, QueueError> {
        let config = self.storage_config(kind, Duration::from_secs(30));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let since = now.saturating_sub(within).as_secs();
        let mut conn = self.conn.clone();
        conn.zrangebyscore(config.workers_set(), since, "+inf")
            .await
            .map_err(self.err("reading the live workers"))
    }

    /// Jobs waiting in queue `kind` (ready plus scheduled for later).
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn depth(&self, kind: &str) -> Result<u64, QueueError> {
        let config = self.storage_config(kind, Duration::from_secs(30));
        let mut conn = self.conn.clone();
        let (ready, later): (u64, u64) = redis::pipe()
            .llen(config.active_jobs_list())
            .zcard(config.scheduled_jobs_set())
            .query_async(&mut conn)
            .await
            .map_err(self.err("reading queue depth"))?;
        Ok(ready + later)
    }

    /// Whether Redis answers.
    ///
    /// # Errors
    ///
    /// When it does not.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(self.err("ping"))
    }

    /// Stores a job's final result for a week.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn set_result(&self, task_id: &str, result: &JobResult) -> Result<(), QueueError> {
        self.set_json(&self.result_key(task_id), result).await
    }

    /// A job's final result, once there is one.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn result(&self, task_id: &str) -> Result<Option<JobResult>, QueueError> {
        self.get_json(&self.result_key(task_id)).await
    }

    fn result_key(&self, task_id: &str) -> String {
        format!("{}:result:{task_id}", self.namespace)
    }

    async fn set_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), QueueError> {
        let json = serde_json::to_string(value).unwrap_or_default();
        let mut conn = self.conn.clone();
        conn.set_ex::<_, _, ()>(key, json, KEEP.as_secs())
            .await
            .map_err(self.err("storing a job result"))
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, QueueError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn
            .get(key)
            .await
            .map_err(self.err("reading a job result"))?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Takes the lock `name` if free, for `ttl`; the returned guard renews
    /// it every third of `ttl` until released or dropped. A holder that dies
    /// loses the lock when `ttl` runs out.
    ///
    /// # Errors
    ///
    /// When Redis fails.
    pub async fn try_lock(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<RedisLock>, QueueError> {
        let key = format!("{}:lock:{name}", self.namespace);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut conn = self.conn.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(self.err("taking a target lock"))?;
        if taken.is_none() {
            return Ok(None);
        }
        let renewer = {
            let (mut conn, key, token) = (self.conn.clone(), key.clone(), token.clone());
            tokio::spawn(async move {
                let renew = Script::new(
                    "if redis.call('get', KEYS[1]) == ARGV[1] then \
                     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end",
                );
                let mut tick = tokio::time::interval(ttl / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let kept: Result<i64, _> = renew
                        .key(&key)
                        .arg(&token)
                        .arg(ttl.as_millis() as u64)
                        .invoke_async(&mut conn)
                        .await;
                    match kept {
                        Ok(1) => {}
                        Ok(_) => {
                            tracing::error!(lock = %key, "target lock lost (expired); another run may start");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(lock = %key, error = %e, "could not renew a target lock")
                        }
                    }
                }
            })
        };
        Ok(Some(RedisLock {
            conn: self.conn.clone(),
            key,
            token,
            renewer,
        }))
    }
}

/// A held Redis lock; released on [`RedisLock::release`] or drop.
#[derive(Debug)]
pub struct RedisLock {
    conn: Gated,
    key: String,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl RedisLock {
    /// Releases the lock if this holder still has it.
    pub async fn release(self) {
        self.renewer.abort();
        let mut conn = self.conn.clone();
        let released: Result<i64, _> = Script::new(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) \
             else return 0 end",
        )
        .key(&self.key)
        .arg(&self.token)
        .invoke_async(&mut conn)
        .await;
        if let Err(e) = released {
            tracing::warn!(lock = %self.key, error = %e, "could not release a target lock; it expires by itself");
        }
    }
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn scrub(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => redact::text(text, &[p]),
        _ => text.to_string(),
    }
}

/// Wakes this process's worker of one queue as soon as this process pushed
/// a job there, so a scheduled backup starts at once instead of at the next
/// [`POLL`]. Cloned into the dispatcher and the worker's poll strategy; a
/// restarted worker takes over the wake-ups.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<WakeInner>);

#[derive(Debug, Default)]
struct WakeInner {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Wake {
    /// A job was pushed: the worker should fetch now.
    pub fn signal(&self) {
        self.0.pending.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl Stream for Wake {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        // Register first, then check: a signal in between is never lost.
        self.0.waker.register(cx.waker());
        if self.0.pending.swap(false, Ordering::AcqRel) {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// One [`Wake`] per queue of this process.
#[derive(Debug, Clone, Default)]
pub struct Wakes {
    database: Wake,
    media: Wake,
    maintenance: Wake,
}

impl Wakes {
    /// The wake of queue `kind` ([`DATABASE`], [`MEDIA`] or [`MAINTENANCE`]).
    pub fn get(&self, kind: &str) -> &Wake {
        match kind {
            DATABASE => &self.database,
            MEDIA => &self.media,
            _ => &self.maintenance,
        }
    }

    /// How queue `kind`'s worker polls Redis: when woken, else every [`POLL`].
    pub fn strategy(&self, kind: &str) -> Strategy {
        Strategy::new()
            .stream(self.get(kind).clone())
            .interval(POLL)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;

    #[tokio::test]
    async fn a_wake_is_never_lost_never_repeated_and_only_for_its_queue() {
        let wakes = Wakes::default();
        let mut database = wakes.get(DATABASE).clone();
        assert!(database.next().now_or_never().is_none(), "nothing pushed");

        wakes.get(DATABASE).signal();
        wakes.get(DATABASE).signal();
        assert_eq!(database.next().now_or_never(), Some(Some(())));
        assert!(
            database.next().now_or_never().is_none(),
            "two pushes, one fetch (it takes whatever is queued)"
        );
        assert!(wakes.get(MEDIA).clone().next().now_or_never().is_none());

        // A worker already waiting is woken.
        let waiting = tokio::spawn(async move { database.next().await });
        tokio::task::yield_now().await;
        wakes.get(DATABASE).signal();
        let woken = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert_eq!(woken.ok().and_then(Result::ok), Some(Some(())));
    }
}

//! The plain sections of the configuration, each with its defaults:
//! `[history]`, `[storage]`, `[compression]`, `[tools]`, `[queue]`,
//! `[retry]`, `[worker]` and `[http]`.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    error::{ConfigError, check_range, invalid},
    values::{HistoryUrl, StorageUrl, check_userinfo, resolve, serialize_secret, serialize_url},
};
use crate::{compress::Codec, redact, schedule::cron::CronSchedule};

/// `[history]`: where BackupRun rows live.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// `sqlite://path` (created if missing) or `postgres://...`.
    pub url: HistoryUrl,
}

impl HistorySettings {
    pub(crate) fn validate(&mut self, base: &Path) {
        if let HistoryUrl::Sqlite(p) = &mut self.url {
            *p = resolve(base, p);
        }
    }
}
/// `[storage]`: where artifacts go and how many are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `file:///var/backups`, a plain path, or `s3://bucket/prefix`.
    pub url: StorageUrl,
    /// Keep-last: the newest artifacts kept per target. Unset: 10, or 1
    /// when a calendar rule (`keep_daily`...) is set.
    pub keep: Option<u32>,
    /// Keep the newest artifact of each of the last N days that have one.
    pub keep_daily: u32,
    /// ... of each of the last N ISO weeks that have one.
    pub keep_weekly: u32,
    /// ... of each of the last N months that have one.
    pub keep_monthly: u32,
    /// ... of each of the last N years that have one.
    pub keep_yearly: u32,
    /// S3 endpoint (default: `AWS_ENDPOINT_URL`, else AWS).
    pub endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// S3 access key id (default: `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3 secret key (default: `AWS_SECRET_ACCESS_KEY`).
    #[serde(serialize_with = "serialize_secret")]
    pub secret_access_key: Option<SecretString>,
    /// SFTP: the private key file to log in with (default: ssh's own,
    /// `~/.ssh/id_*` or the agent).
    pub ssh_key: Option<PathBuf>,
    /// SFTP: how the server's host key is checked: `strict` (it must be in
    /// the known_hosts of the user running the tool) or `accept-new` (learn
    /// it on first contact, refuse it if it changes). There is no "off":
    /// ssh would record the key anyway, and trust it from then on.
    pub ssh_host_key_check: HostKeyCheck,
    /// WebDAV: the login name.
    pub username: Option<String>,
    /// WebDAV: the password (better as `BACKUP__STORAGE__PASSWORD`).
    #[serde(serialize_with = "serialize_secret")]
    pub password: Option<SecretString>,
    /// Azure: the storage account (default: `AZURE_STORAGE_ACCOUNT`).
    pub account_name: Option<String>,
    /// Azure: the account key (default: `AZURE_STORAGE_KEY`).
    #[serde(serialize_with = "serialize_secret")]
    pub account_key: Option<SecretString>,
}

/// Which artifacts to keep, the way restic and borg define it: `last`
/// keeps the newest N; each calendar rule keeps the newest artifact of each
/// of the last N periods (days, ISO weeks, months, years, in the
/// configured timezone) that have one. An artifact kept by any rule stays;
/// the newest is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Keep the newest N.
    pub last: u32,
    /// Keep one per day, for N days that have one.
    pub daily: u32,
    /// One per ISO week.
    pub weekly: u32,
    /// One per month.
    pub monthly: u32,
    /// One per year.
    pub yearly: u32,
}

impl fmt::Display for RetentionPolicy {
    /// "the newest 10 artifacts", then ", one a day for 7 days and one a
    /// month for 12 months" for the calendar rules that are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "the newest {}",
            plural(self.last, "artifact", "artifacts")
        )?;
        let rules: Vec<String> = [
            (self.daily, "a day", "day", "days"),
            (self.weekly, "a week", "week", "weeks"),
            (self.monthly, "a month", "month", "months"),
            (self.yearly, "a year", "year", "years"),
        ]
        .into_iter()
        .filter(|(n, ..)| *n > 0)
        .map(|(n, per, one, many)| format!("one {per} for {}", plural(n, one, many)))
        .collect();
        match rules.split_last() {
            None => Ok(()),
            Some((last, [])) => write!(f, ", {last}"),
            Some((last, rest)) => write!(f, ", {} and {last}", rest.join(", ")),
        }
    }
}

/// How an SFTP server's host key is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyCheck {
    /// Known in `~/.ssh/known_hosts`, else refused.
    #[default]
    Strict,
    /// Learnt on first contact, refused if it changes later.
    AcceptNew,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            url: StorageUrl::Fs {
                root: PathBuf::from("backups"),
            },
            keep: None,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            ssh_key: None,
            ssh_host_key_check: HostKeyCheck::Strict,
            username: None,
            password: None,
            account_name: None,
            account_key: None,
        }
    }
}

impl StorageSettings {
    /// The retention rules of `[storage]`.
    pub fn retention(&self) -> RetentionPolicy {
        let calendar = [
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(|n| *n > 0);
        RetentionPolicy {
            last: self.keep.unwrap_or(if calendar { 1 } else { 10 }),
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
        }
    }

    pub(crate) fn validate(&mut self, base: &Path) -> Result<(), ConfigError> {
        if self.keep == Some(0) {
            return Err(invalid(
                "storage.keep must be at least 1 (the newest backup is always kept)",
            ));
        }
        if let Some(keep) = self.keep {
            check_range("storage.keep", keep, 1..=100_000)?;
        }
        for (key, n) in [
            ("storage.keep_daily", self.keep_daily),
            ("storage.keep_weekly", self.keep_weekly),
            ("storage.keep_monthly", self.keep_monthly),
            ("storage.keep_yearly", self.keep_yearly),
        ] {
            check_range(key, n, 0..=100_000)?;
        }
        if let StorageUrl::Fs { root } = &mut self.url {
            *root = resolve(base, root);
        }
        let sftp = matches!(self.url, StorageUrl::Sftp { .. });
        let azure = matches!(self.url, StorageUrl::Azblob { .. });
        let s3 = matches!(self.url, StorageUrl::S3 { .. });
        let dav = matches!(self.url, StorageUrl::Webdav { .. });
        for (key, set, fits) in [
            ("ssh_key", self.ssh_key.is_some(), sftp),
            (
                "ssh_host_key_check",
                self.ssh_host_key_check != HostKeyCheck::Strict,
                sftp,
            ),
            ("username", self.username.is_some(), dav),
            ("password", self.password.is_some(), dav),
            ("account_name", self.account_name.is_some(), azure),
            ("account_key", self.account_key.is_some(), azure),
            ("region", self.region.is_some(), s3),
            ("access_key_id", self.access_key_id.is_some(), s3),
            ("secret_access_key", self.secret_access_key.is_some(), s3),
            ("endpoint", self.endpoint.is_some(), s3 || azure),
        ] {
            if set && !fits {
                return Err(invalid(format!(
                    "storage.{key} does not apply to storage.url {}",
                    self.url
                )));
            }
        }
        if let Some(key) = &mut self.ssh_key {
            *key = resolve(base, key);
        }
        Ok(())
    }
}

/// `[compression]`: codec, level and threads of the artifact compression.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSettings {
    /// `zstd` (default), `gzip` or `none`.
    pub algorithm: Codec,
    /// Codec level: zstd 1-19 (default 3), gzip 1-9 (default 6).
    pub level: Option<i32>,
    /// zstd worker threads; 0 means one per core.
    pub threads: u32,
}

impl Default for CompressionSettings {
    fn default() -> Self {
        Self {
            algorithm: Codec::Zstd,
            level: None,
            threads: 0,
        }
    }
}

impl CompressionSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_range("compression.threads", self.threads, 0..=256)?;
        let (range, name) = match self.algorithm {
            Codec::Zstd => (1..=19, "zstd"),
            Codec::Gzip => (1..=9, "gzip"),
            Codec::None => (0..=0, "none"),
        };
        match self.level {
            Some(level) if !range.contains(&level) => Err(invalid(format!(
                "compression.level {level} is out of range for {name} ({}..={})",
                range.start(),
                range.end()
            ))),
            _ => Ok(()),
        }
    }
}

/// `[tools]`: dump tools, when not the ones on PATH.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolSettings {
    /// `pg_dump` to run (default: `pg_dump` on PATH).
    pub pg_dump: Option<PathBuf>,
    /// `mariadb-dump`/`mysqldump` to run (default: whichever is on PATH).
    pub mariadb_dump: Option<PathBuf>,
    /// `pg_restore` for restores and verification (default: beside
    /// `pg_dump`, else on PATH).
    pub pg_restore: Option<PathBuf>,
    /// `mariadb`/`mysql` client for restores (default: beside
    /// `mariadb_dump`, else on PATH).
    pub mariadb: Option<PathBuf>,
}

impl ToolSettings {
    pub(crate) fn validate(&mut self, base: &Path) {
        for tool in [
            &mut self.pg_dump,
            &mut self.mariadb_dump,
            &mut self.pg_restore,
            &mut self.mariadb,
        ]
        .into_iter()
        .flatten()
        {
            // A bare name ("pg_dump-16") is looked up on PATH; a path is relative to the config.
            if tool.components().count() > 1 {
                *tool = resolve(base, tool);
            }
        }
    }
}

/// `[queue]`: the Redis queue shared by workers.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// `redis://[:password@]host:port[/db]` (`rediss://` for TLS).
    #[serde(serialize_with = "serialize_url")]
    pub url: SecretString,
    /// Prefix of every Redis key, so several deployments can share a server.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_namespace() -> String {
    "backup".into()
}

impl fmt::Debug for QueueSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueSettings")
            .field("url", &redact::url(self.url.expose_secret()))
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl QueueSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let raw = self.url.expose_secret();
        check_userinfo("queue.url", raw).map_err(invalid)?;
        let scheme = raw.split_once("://").map_or("", |(s, _)| s);
        if !matches!(scheme, "redis" | "rediss" | "redis+unix" | "unix")
            || url::Url::parse(raw).is_err()
        {
            return Err(invalid(format!(
                "queue.url {} is not a Redis URL; expected redis://[:password@]host:port[/db] \
                 (rediss:// for TLS)",
                if raw.is_empty() {
                    "\"\"".to_string()
                } else {
                    redact::url(raw)
                }
            )));
        }
        let ns = &self.namespace;
        if ns.is_empty() || ns.contains(|c: char| c.is_whitespace() || c == '{' || c == '}') {
            return Err(invalid(format!(
                "queue.namespace {ns:?} must be non-empty, without spaces or braces"
            )));
        }
        Ok(())
    }
}

/// `[retry]`: attempts and backoff of a failing backup job.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Attempts per job, the first included (1 means no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubles for each further one.
    pub backoff_seconds: u64,
    /// Upper bound of the wait between attempts.
    pub max_backoff_seconds: u64,
    /// Tries of each notification (mail, webhook, ping) in the worker.
    pub notification_attempts: u32,
    /// Wait before the second try of a notification; doubles after.
    pub notification_backoff_seconds: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff_seconds: 30,
            max_backoff_seconds: 900,
            notification_attempts: 3,
            notification_backoff_seconds: 5,
        }
    }
}

impl RetrySettings {
    /// The wait after failed attempt `attempt` (1-based): exponential from
    /// `backoff_seconds`, capped at `max_backoff_seconds`.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        std::time::Duration::from_secs(
            self.backoff_seconds
                .saturating_mul(factor)
                .min(self.max_backoff_seconds),
        )
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.attempts == 0 {
            return Err(invalid(
                "retry.attempts must be at least 1 (1 means no retry)",
            ));
        }
        check_range("retry.attempts", self.attempts, 1..=100)?;
        check_range("retry.backoff_seconds", self.backoff_seconds, 0..=86_400)?;
        check_range(
            "retry.max_backoff_seconds",
            self.max_backoff_seconds,
            0..=604_800,
        )?;
        check_range(
            "retry.notification_attempts",
            self.notification_attempts,
            1..=20,
        )?;
        check_range(
            "retry.notification_backoff_seconds",
            self.notification_backoff_seconds,
            0..=3_600,
        )
    }
}

/// `[worker]`: the long-running worker process.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// On SIGTERM/SIGINT, how long a running backup may take to finish.
    pub shutdown_grace_seconds: u64,
    /// A fire time missed while no worker ran is caught up if it is at most
    /// this old; older misses are logged and skipped.
    pub catch_up_window_hours: u64,
    /// Liveness beat of workers and running backups. A worker silent for
    /// three beats is dead: its job goes to another replica and its running
    /// row is finished as failed.
    pub heartbeat_seconds: u64,
    /// When the maintenance job (history cleanup, lost runs) runs.
    pub maintenance_schedule: CronSchedule,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            shutdown_grace_seconds: 600,
            catch_up_window_hours: 24,
            heartbeat_seconds: 10,
            maintenance_schedule: CronSchedule::builtin("30 4 * * *"),
        }
    }
}

impl WorkerSettings {
    /// After this long without a beat, a worker or a running backup is lost.
    pub fn lost_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.heartbeat_seconds.saturating_mul(3))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "worker.heartbeat_seconds",
            self.heartbeat_seconds,
            1..=3_600,
        )?;
        check_range(
            "worker.shutdown_grace_seconds",
            self.shutdown_grace_seconds,
            0..=86_400,
        )?;
        // A leap year of hours: a longer window would catch up fires from
        // schedules nobody remembers.
        check_range(
            "worker.catch_up_window_hours",
            self.catch_up_window_hours,
            0..=8_784,
        )
    }
}

/// `[http]`: the worker's health and metrics listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// `host:port` to listen on; empty turns the listener off.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9187".into(),
        }
    }
}

impl HttpSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(format!(
                "http.listen {:?} is not an address like \"127.0.0.1:9187\" (empty turns it off)",
                self.listen
            )));
        }
        Ok(())
    }
}

//! Settings: defaults, then the TOML file, then `BACKUP__...` environment
//! variables, parsed into domain types and validated at load time.

use std::{
    collections::{BTreeMap, HashSet},
    env, fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use url::Url;

use crate::{compress::Codec, redact, schedule::CronSchedule};

/// The file read when neither `--config` nor `BACKUP_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "backup.toml";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "BACKUP_CONFIG";
/// Prefix of environment overrides: `BACKUP__SMTP__URL` sets `smtp.url`.
pub const ENV_PREFIX: &str = "BACKUP__";
/// The fully commented example configuration (`backup-cli config example`).
pub const EXAMPLE: &str = include_str!("../../examples/backup.example.toml");

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file was named explicitly but does not exist.
    #[error("config file {} not found; check --config or {CONFIG_ENV}", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// A key has a value that does not parse or is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// The whole configuration. Keys mirror the reference app's settings in
/// snake_case; unknown keys are errors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Master switch for scheduled backups.
    pub enabled: bool,
    /// Environment name shown in notifications (`prod`, `staging`...).
    pub environment: String,
    /// Who gets notifications; empty falls back to `admins`.
    pub notification_emails: Vec<EmailAddress>,
    /// Fallback recipients.
    pub admins: Vec<EmailAddress>,
    /// Days of run history kept by `runs cleanup`.
    pub history_retention_days: u32,
    /// Send a mail after a successful run.
    pub email_on_success: bool,
    /// Send a mail after a failed run.
    pub email_on_failure: bool,
    /// Prefix of notification subjects.
    pub email_subject_prefix: String,
    /// IANA timezone schedules fire in and times are shown in.
    pub timezone: Timezone,
    /// Where run history is kept.
    pub history: HistorySettings,
    /// Where artifacts are written.
    pub storage: StorageSettings,
    /// How artifacts are compressed.
    pub compression: CompressionSettings,
    /// Paths of external dump tools.
    pub tools: ToolSettings,
    /// The Redis job queue the workers share; absent means single-process.
    pub queue: Option<QueueSettings>,
    /// Outgoing mail for notifications.
    pub smtp: Option<SmtpSettings>,
    /// HTTP endpoints told about outcomes (`[[webhooks]]`).
    pub webhooks: Vec<WebhookSettings>,
    /// When the worker verifies the newest artifact of each target (and
    /// drills its restore where a scratch database is configured); none: off.
    pub verify_schedule: Option<CronSchedule>,
    /// Databases a restore drill may create and drop, one per engine
    /// (`postgres://.../drill`, `mysql://.../drill`). SQLite drills use a
    /// temporary file.
    pub verify_scratch: Vec<ScratchDatabase>,
    /// Database backups: schedule and targets.
    pub database_backup: DatabaseBackupSettings,
    /// Media (directory tree) backups: schedule and targets.
    pub media_backup: MediaBackupSettings,
    /// How failed backups are retried by the worker.
    pub retry: RetrySettings,
    /// The worker process: catch-up, shutdown, crash detection, maintenance.
    pub worker: WorkerSettings,
    /// The worker's HTTP listener for `/healthz` and `/metrics`.
    pub http: HttpSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            environment: "unknown".into(),
            notification_emails: Vec::new(),
            admins: Vec::new(),
            history_retention_days: 90,
            email_on_success: true,
            email_on_failure: true,
            email_subject_prefix: "[Backup]".into(),
            timezone: Timezone(chrono_tz::UTC),
            history: HistorySettings::default(),
            storage: StorageSettings::default(),
            compression: CompressionSettings::default(),
            tools: ToolSettings::default(),
            queue: None,
            smtp: None,
            webhooks: Vec::new(),
            verify_schedule: None,
            verify_scratch: Vec::new(),
            database_backup: DatabaseBackupSettings::default(),
            media_backup: MediaBackupSettings::default(),
            retry: RetrySettings::default(),
            worker: WorkerSettings::default(),
            http: HttpSettings::default(),
        }
    }
}

/// Where the configuration was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated settings.
    pub settings: Settings,
    /// The file read, if one existed.
    pub file: Option<PathBuf>,
}

/// Loads the configuration: `path`, else `$BACKUP_CONFIG`, else
/// `./backup.toml` (which may be absent: defaults and environment then
/// apply), overridden by `BACKUP__SECTION__KEY` environment variables.
///
/// Relative paths in the file are resolved against the file's directory, so
/// a config behaves the same whatever directory the process starts in.
///
/// # Errors
///
/// [`ConfigError::NotFound`] when an explicitly named file is missing;
/// [`ConfigError::Invalid`] naming the offending key otherwise.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (file, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => (PathBuf::from(p), true),
            _ => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        },
    };
    let exists = file.is_file();
    if explicit && !exists {
        return Err(ConfigError::NotFound { path: file });
    }
    let figment = Figment::new()
        .merge(Toml::file_exact(&file))
        .merge(Env::prefixed(ENV_PREFIX).split("__"));
    let settings: Settings = figment.extract().map_err(|e| {
        invalid(
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let base = match file.parent() {
        Some(dir) if exists && !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = std::path::absolute(&base)
        .map_err(|e| invalid(format!("cannot resolve {}: {e}", base.display())))?;
    let settings = settings.validated(&base)?;
    Ok(Loaded {
        settings,
        file: exists.then_some(file),
    })
}

/// Parses a config from TOML text alone (no environment), resolving
/// relative paths against `base`.
///
/// # Errors
///
/// As [`load`].
pub fn from_toml(text: &str, base: &Path) -> Result<Settings, ConfigError> {
    let settings: Settings = Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| invalid(e.to_string()))?;
    settings.validated(base)
}

impl Settings {
    fn validated(mut self, base: &Path) -> Result<Self, ConfigError> {
        if self.history_retention_days == 0 {
            return Err(invalid("history_retention_days must be at least 1"));
        }
        if self.storage.keep == 0 {
            return Err(invalid(
                "storage.keep must be at least 1 (the newest backup is always kept)",
            ));
        }
        self.compression.validate()?;
        if self.retry.attempts == 0 {
            return Err(invalid(
                "retry.attempts must be at least 1 (1 means no retry)",
            ));
        }
        if self.worker.heartbeat_seconds == 0 {
            return Err(invalid("worker.heartbeat_seconds must be at least 1"));
        }
        if let Some(queue) = &self.queue {
            let ns = &queue.namespace;
            if ns.is_empty() || ns.contains(|c: char| c.is_whitespace() || c == '{' || c == '}') {
                return Err(invalid(format!(
                    "queue.namespace {ns:?} must be non-empty, without spaces or braces"
                )));
            }
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(format!(
                "http.listen {:?} is not an address like \"127.0.0.1:9187\" (empty turns it off)",
                self.http.listen
            )));
        }
        if let Some(smtp) = &mut self.smtp {
            smtp.validate(base)?;
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            check_http_url(&format!("webhooks[{i}].url"), &hook.url)?;
            if hook.timeout_seconds == 0 {
                return Err(invalid(format!(
                    "webhooks[{i}].timeout_seconds must be at least 1"
                )));
            }
        }
        for (key, ping) in [
            ("database_backup.ping_url", &self.database_backup.ping_url),
            ("media_backup.ping_url", &self.media_backup.ping_url),
        ] {
            if let Some(url) = ping {
                check_http_url(key, url)?;
            }
        }
        let mut engines = HashSet::new();
        for scratch in &self.verify_scratch {
            if !engines.insert(scratch.0.engine()) {
                return Err(invalid(format!(
                    "verify_scratch: two {} databases; give one per engine",
                    scratch.0.engine()
                )));
            }
        }
        if self.retry.notification_attempts == 0 {
            return Err(invalid("retry.notification_attempts must be at least 1"));
        }
        if let HistoryUrl::Sqlite(p) = &mut self.history.url {
            *p = resolve(base, p);
        }
        if let StorageUrl::Fs { root } = &mut self.storage.url {
            *root = resolve(base, root);
        }
        for tool in [
            &mut self.tools.pg_dump,
            &mut self.tools.mariadb_dump,
            &mut self.tools.pg_restore,
            &mut self.tools.mariadb,
        ]
        .into_iter()
        .flatten()
        {
            // A bare name ("pg_dump-16") is looked up on PATH; a path is relative to the config.
            if tool.components().count() > 1 {
                *tool = resolve(base, tool);
            }
        }
        let mut names = HashSet::new();
        for db in &mut self.database_backup.databases {
            if let DatabaseSource::Sqlite { path } = &mut db.source {
                *path = resolve(base, path);
            }
            if !names.insert(db.name.clone()) {
                return Err(invalid(format!(
                    "database_backup.databases: two targets are named {:?}; give one a distinct `name`",
                    db.name
                )));
            }
        }
        let mut names = HashSet::new();
        for media in &mut self.media_backup.paths {
            media.path = resolve(base, &media.path);
            if !names.insert(media.name.clone()) {
                return Err(invalid(format!(
                    "media_backup.paths: two targets are named {:?}; give one a distinct `name`",
                    media.name
                )));
            }
        }
        for pattern in &self.media_backup.exclude {
            check_glob("media_backup.exclude", pattern)?;
        }
        Ok(self)
    }

    /// The effective configuration as TOML, every secret masked.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn check_glob(key: &str, pattern: &str) -> Result<(), ConfigError> {
    globset::Glob::new(pattern)
        .map(|_| ())
        .map_err(|e| invalid(format!("{key}: bad glob {pattern:?}: {e}")))
}

fn serialize_secret<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str(redact::MASK),
        None => s.serialize_none(),
    }
}

/// An email address (`local@domain`), checked at load time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl TryFrom<String> for EmailAddress {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok = matches!(value.split_once('@'), Some((l, d)) if !l.is_empty() && (d.contains('.') || d == "localhost"))
            && !value.chars().any(char::is_whitespace);
        if ok {
            Ok(Self(value))
        } else {
            Err(format!("{value:?} is not an email address"))
        }
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IANA timezone such as `Europe/Rome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timezone(pub chrono_tz::Tz);

impl TryFrom<String> for Timezone {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        chrono_tz::Tz::from_str(&value).map(Timezone).map_err(|_| {
            format!(
                "unknown timezone {value:?}; use an IANA name such as \"UTC\" or \"Europe/Rome\""
            )
        })
    }
}

impl From<Timezone> for String {
    fn from(value: Timezone) -> Self {
        value.0.name().to_string()
    }
}

/// `[history]`: where BackupRun rows live.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// `sqlite://path` (created if missing) or `postgres://...`.
    pub url: HistoryUrl,
}

/// The history database.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum HistoryUrl {
    /// A SQLite file (absolute after loading).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (may hold a password).
    Postgres(SecretString),
}

impl Default for HistoryUrl {
    fn default() -> Self {
        HistoryUrl::Sqlite(PathBuf::from("backups-history.db"))
    }
}

impl TryFrom<String> for HistoryUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if let Some(path) = sqlite_path(&value) {
            return path.map(HistoryUrl::Sqlite);
        }
        let scheme = value.split("://").next().unwrap_or_default();
        if matches!(scheme, "postgres" | "postgresql") {
            Url::parse(&value)
                .map_err(|e| format!("bad history URL {}: {e}", redact::url(&value)))?;
            return Ok(HistoryUrl::Postgres(value.into()));
        }
        Err(format!(
            "history.url {} is neither sqlite:// nor postgres://",
            redact::url(&value)
        ))
    }
}

impl From<HistoryUrl> for String {
    fn from(value: HistoryUrl) -> Self {
        match value {
            HistoryUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            HistoryUrl::Postgres(url) => redact::url(url.expose_secret()),
        }
    }
}

impl fmt::Debug for HistoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from(self.clone()))
    }
}

/// `sqlite:///abs/path` or `sqlite://relative/path` (also `sqlite:path`);
/// `None` when `value` is not a sqlite URL at all.
fn sqlite_path(value: &str) -> Option<Result<PathBuf, String>> {
    let rest = value.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(if rest.is_empty() || rest.contains('?') {
        Err(format!(
            "{value:?}: expected sqlite:///absolute/path or sqlite://relative/path"
        ))
    } else {
        Ok(PathBuf::from(rest))
    })
}

/// `[storage]`: where artifacts go and how many are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `file:///var/backups`, a plain path, or `s3://bucket/prefix`.
    pub url: StorageUrl,
    /// Successful artifacts kept per target; older ones are deleted.
    pub keep: u32,
    /// S3 endpoint (default: `AWS_ENDPOINT_URL`, else AWS).
    pub endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// S3 access key id (default: `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3 secret key (default: `AWS_SECRET_ACCESS_KEY`).
    #[serde(serialize_with = "serialize_secret")]
    pub secret_access_key: Option<SecretString>,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            url: StorageUrl::Fs {
                root: PathBuf::from("backups"),
            },
            keep: 10,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// The storage location.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum StorageUrl {
    /// A local directory (absolute after loading).
    Fs {
        /// The directory.
        root: PathBuf,
    },
    /// An S3 bucket and key prefix.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket ("" for none).
        prefix: String,
    },
}

impl TryFrom<String> for StorageUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if let Some(rest) = value.strip_prefix("file://") {
            if rest.is_empty() {
                return Err("storage.url file:// needs a path, e.g. file:///var/backups".into());
            }
            // OpenDAL would read file://relative/path as /path; keep it relative.
            return Ok(StorageUrl::Fs {
                root: PathBuf::from(rest),
            });
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || bucket.contains(['@', '?', ':']) {
                return Err(format!(
                    "storage.url {value:?}: expected s3://bucket/prefix; put endpoint, region and keys in [storage]"
                ));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if value.contains("://") {
            return Err(format!(
                "storage.url {}: unsupported scheme; use file:///path or s3://bucket/prefix",
                redact::url(&value)
            ));
        }
        if value.is_empty() {
            return Err("storage.url is empty".into());
        }
        Ok(StorageUrl::Fs {
            root: PathBuf::from(value),
        })
    }
}

impl From<StorageUrl> for String {
    fn from(value: StorageUrl) -> Self {
        value.to_string()
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageUrl::Fs { root } => write!(f, "file://{}", root.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
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
    fn validate(&self) -> Result<(), ConfigError> {
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
            maintenance_schedule: cron("30 4 * * *"),
        }
    }
}

impl WorkerSettings {
    /// After this long without a beat, a worker or a running backup is lost.
    pub fn lost_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.heartbeat_seconds * 3)
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

/// `[smtp]`: the mail server for notifications.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// `smtp://[user[:password]@]host[:port]` (port 587, STARTTLS when the
    /// server offers it) or `smtps://...` (port 465, implicit TLS).
    #[serde(serialize_with = "serialize_url")]
    pub url: SecretString,
    /// STARTTLS on `smtp://`: `opportunistic` (default), `required` or
    /// `none`. `smtps://` is always TLS.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Login name, when not in the URL.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, when not in the URL (better: `BACKUP__SMTP__PASSWORD` or
    /// `password_file`).
    #[serde(default, serialize_with = "serialize_secret")]
    pub password: Option<SecretString>,
    /// A file holding the password (a container secret, say); read at load.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from: EmailAddress,
    /// Limit of one send, from connecting to the server's last reply, in
    /// seconds.
    #[serde(default = "default_smtp_timeout", alias = "timeout")]
    pub timeout_seconds: u64,
    /// A PEM file of CA certificates trusted besides the system ones (a
    /// private CA, or a self-signed server certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_smtp_timeout() -> u64 {
    30
}

/// The `tls` key of `[smtp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, and fail when the server does not offer it.
    Required,
    /// STARTTLS when the server offers it, else plain text.
    Opportunistic,
    /// Plain text (a local relay).
    None,
}

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// STARTTLS, required.
    StartTls,
    /// STARTTLS when offered.
    Opportunistic,
    /// No TLS.
    Plain,
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpSecurity::Implicit => "implicit TLS",
            SmtpSecurity::StartTls => "STARTTLS required",
            SmtpSecurity::Opportunistic => "STARTTLS when offered",
            SmtpSecurity::Plain => "no TLS",
        })
    }
}

/// Where and how to reach the mail server, from a validated `[smtp]`.
#[derive(Clone)]
pub struct SmtpEndpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS mode.
    pub security: SmtpSecurity,
    /// Login name and password, when the server wants them.
    pub credentials: Option<(String, SecretString)>,
}

impl fmt::Debug for SmtpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for SmtpEndpoint {
    /// `smtp://user@host:port (STARTTLS required)`; never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.security == SmtpSecurity::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        let user = self
            .credentials
            .as_ref()
            .map_or(String::new(), |(u, _)| format!("{u}@"));
        write!(
            f,
            "{scheme}://{user}{}:{} ({})",
            self.host, self.port, self.security
        )
    }
}

impl SmtpSettings {
    /// Host, port, TLS mode and credentials, from the URL and the keys.
    ///
    /// # Errors
    ///
    /// When the URL is not `smtp://` or `smtps://` with a host, a password
    /// is given twice, or `tls` contradicts `smtps://`.
    pub fn endpoint(&self) -> Result<SmtpEndpoint, ConfigError> {
        let raw = self.url.expose_secret();
        let shown = redact::url(raw);
        let url = Url::parse(raw).map_err(|e| invalid(format!("smtp.url {shown}: {e}")))?;
        let implicit = match url.scheme() {
            "smtps" => true,
            "smtp" => false,
            other => {
                return Err(invalid(format!(
                    "smtp.url {shown}: scheme {other:?} is not smtp:// or smtps://"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(format!("smtp.url {shown} has no host")))?;
        // Url keeps the brackets of an IPv6 address; the resolver wants none.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(invalid(format!(
                "smtp.url {shown}: expected smtp://[user:password@]host[:port] without a path or query"
            )));
        }
        let security = match (implicit, self.tls) {
            (true, None | Some(SmtpTls::Required)) => SmtpSecurity::Implicit,
            (true, Some(other)) => {
                return Err(invalid(format!(
                    "smtp.tls = {:?} contradicts smtps:// (always TLS); use smtp:// for STARTTLS or no TLS",
                    format!("{other:?}").to_lowercase()
                )));
            }
            (false, Some(SmtpTls::Required)) => SmtpSecurity::StartTls,
            (false, None | Some(SmtpTls::Opportunistic)) => SmtpSecurity::Opportunistic,
            (false, Some(SmtpTls::None)) => SmtpSecurity::Plain,
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let url_user = (!url.username().is_empty()).then(|| decode(url.username()));
        let url_password = url.password().map(decode);
        if url_user.is_some() && self.username.is_some() {
            return Err(invalid(
                "smtp: the user is given both in smtp.url and in smtp.username; keep one",
            ));
        }
        if url_password.is_some() && self.password.is_some() {
            return Err(invalid(
                "smtp: the password is given both in smtp.url and in smtp.password (or \
                 password_file, or BACKUP__SMTP__PASSWORD); keep one",
            ));
        }
        let user = url_user.or_else(|| self.username.clone());
        let password = url_password
            .map(SecretString::from)
            .or_else(|| self.password.clone());
        let credentials = match (user, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "smtp: a user is set but no password (smtp.password, password_file or \
                     BACKUP__SMTP__PASSWORD)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "smtp: a password is set but no user (in smtp.url or smtp.username)",
                ));
            }
        };
        Ok(SmtpEndpoint {
            host,
            // The submission ports (RFC 8314); a relay on 25 names its port.
            port: url.port().unwrap_or(if implicit { 465 } else { 587 }),
            security,
            credentials,
        })
    }

    fn validate(&mut self, base: &Path) -> Result<(), ConfigError> {
        if let Some(file) = self.password_file.take() {
            let file = resolve(base, &file);
            if self.password.is_some() {
                return Err(invalid(
                    "smtp: both password and password_file are set; keep one",
                ));
            }
            let text = std::fs::read_to_string(&file).map_err(|e| {
                invalid(format!(
                    "smtp.password_file {}: cannot read it: {e}",
                    file.display()
                ))
            })?;
            let password = text.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(invalid(format!(
                    "smtp.password_file {} is empty",
                    file.display()
                )));
            }
            self.password = Some(password.into());
            self.password_file = Some(file);
        }
        if let Some(ca) = &mut self.ca_file {
            *ca = resolve(base, ca);
        }
        if self.timeout_seconds == 0 {
            return Err(invalid("smtp.timeout_seconds must be at least 1"));
        }
        self.endpoint().map(|_| ())
    }
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("endpoint", &self.endpoint().map(|e| e.to_string()))
            .field("from", &self.from)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Which outcomes a webhook hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// A successful run.
    Success,
    /// A job that failed for good (after its last attempt).
    Failure,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A JSON object of the event and the run (see the README).
    #[default]
    Json,
    /// A Slack-compatible `{"text": ...}` message.
    Slack,
}

/// One `[[webhooks]]` entry.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// `https://...` to POST to. Treated as a secret (it usually holds a
    /// token): only its scheme and host are ever shown.
    #[serde(serialize_with = "serialize_endpoint")]
    pub url: SecretString,
    /// `["failure"]` (default) or `["success", "failure"]`.
    #[serde(default = "default_notify_on")]
    pub on: Vec<NotifyOn>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Limit of each request, in seconds.
    #[serde(default = "default_http_timeout")]
    pub timeout_seconds: u64,
}

fn default_notify_on() -> Vec<NotifyOn> {
    vec![NotifyOn::Failure]
}

fn default_http_timeout() -> u64 {
    10
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &redact::endpoint(self.url.expose_secret()))
            .field("on", &self.on)
            .field("format", &self.format)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

fn serialize_endpoint<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact::endpoint(value.expose_secret()))
}

fn serialize_ping<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(url) => serialize_endpoint(url, s),
        None => s.serialize_none(),
    }
}

/// Checks that a webhook or ping URL is an absolute http(s) URL.
fn check_http_url(key: &str, value: &SecretString) -> Result<(), ConfigError> {
    let shown = redact::endpoint(value.expose_secret());
    let url =
        Url::parse(value.expose_secret()).map_err(|e| invalid(format!("{key} {shown}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "{key} {shown}: expected an http:// or https:// URL"
        )));
    }
    Ok(())
}

fn serialize_url<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact::url(value.expose_secret()))
}

/// `[database_backup]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseBackupSettings {
    /// Whether database backups are scheduled.
    pub enabled: bool,
    /// When they run.
    pub schedule: CronSchedule,
    /// The databases, each a target with its own run and artifact.
    pub databases: Vec<DatabaseTarget>,
    /// Dead-man's switch (healthchecks.io style): `{ping_url}/start` when
    /// a run starts, `{ping_url}` on success, `{ping_url}/fail` on failure.
    #[serde(serialize_with = "serialize_ping")]
    pub ping_url: Option<SecretString>,
}

impl Default for DatabaseBackupSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            schedule: cron("0 2 * * *"),
            databases: Vec::new(),
            ping_url: None,
        }
    }
}

/// `[media_backup]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaBackupSettings {
    /// Whether media backups are scheduled.
    pub enabled: bool,
    /// When they run.
    pub schedule: CronSchedule,
    /// The directories, each a target.
    pub paths: Vec<MediaTarget>,
    /// Glob patterns (relative to each directory) left out of every archive.
    pub exclude: Vec<String>,
    /// Dead-man's switch URL, as for databases.
    #[serde(serialize_with = "serialize_ping")]
    pub ping_url: Option<SecretString>,
}

impl Default for MediaBackupSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            schedule: cron("0 3 * * 0"),
            paths: Vec::new(),
            exclude: Vec::new(),
            ping_url: None,
        }
    }
}

fn cron(expr: &str) -> CronSchedule {
    CronSchedule::from_str(expr).unwrap_or_else(|e| unreachable!("built-in schedule: {e}"))
}

/// One database to back up.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "DatabaseEntry", into = "DatabaseEntry")]
pub struct DatabaseTarget {
    /// Stable name: the database name unless set.
    pub name: String,
    /// How to reach it.
    pub source: DatabaseSource,
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseTarget")
            .field("name", &self.name)
            .field("url", &self.source.redacted_url())
            .finish()
    }
}

/// A database as written in the config: a URL, or a table with a name.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum DatabaseEntry {
    Url(String),
    Named(NamedDatabase),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NamedDatabase {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl TryFrom<DatabaseEntry> for DatabaseTarget {
    type Error = String;

    fn try_from(entry: DatabaseEntry) -> Result<Self, Self::Error> {
        let (url, name) = match entry {
            DatabaseEntry::Url(url) => (url, None),
            DatabaseEntry::Named(n) => (n.url, n.name),
        };
        let source = DatabaseSource::parse(&url)?;
        let name = match name {
            Some(name) => name,
            None => source.default_name().ok_or_else(|| {
                format!(
                    "cannot derive a target name from {}; set `name`",
                    redact::url(&url)
                )
            })?,
        };
        check_target_name(&name)?;
        Ok(Self { name, source })
    }
}

impl From<DatabaseTarget> for DatabaseEntry {
    fn from(t: DatabaseTarget) -> Self {
        DatabaseEntry::Named(NamedDatabase {
            url: t.source.redacted_url(),
            name: Some(t.name),
        })
    }
}

/// Target names become storage path segments: keep them plain.
fn check_target_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "target name {name:?} must be 1-100 characters of letters, digits, '_', '-', '.', \
             not starting with '.' or '-'; set `name` explicitly"
        ))
    }
}

/// Where a database lives and how to connect to it.
#[derive(Clone)]
pub enum DatabaseSource {
    /// PostgreSQL server database.
    Postgres(ServerDatabase),
    /// MySQL or MariaDB server database.
    Mysql(ServerDatabase),
    /// SQLite file (absolute after loading).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

/// Connection details of a database on a server.
#[derive(Clone)]
pub struct ServerDatabase {
    /// Host name or address; `None` for the local socket default.
    pub host: Option<String>,
    /// TCP port; `None` for the engine default.
    pub port: Option<u16>,
    /// Login role; `None` for the tool's default.
    pub user: Option<String>,
    /// Password, never shown.
    pub password: Option<SecretString>,
    /// Database name.
    pub database: String,
    /// Extra connection parameters (PostgreSQL: `sslmode`, `sslrootcert`,
    /// `connect_timeout`, `host` for a socket directory).
    pub params: BTreeMap<String, String>,
    pub(crate) url: String,
}

impl ServerDatabase {
    /// The connection URL with the password masked.
    pub fn redacted_url(&self) -> String {
        redact::url(&self.url)
    }

    /// `host:port` for messages.
    pub fn address(&self, default_port: u16) -> String {
        format!(
            "{}:{}",
            self.host.as_deref().unwrap_or("localhost"),
            self.port.unwrap_or(default_port)
        )
    }
}

const PG_PARAMS: &[&str] = &["sslmode", "sslrootcert", "connect_timeout", "host"];
const MYSQL_PARAMS: &[&str] = &["socket"];

impl fmt::Debug for DatabaseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted_url())
    }
}

impl DatabaseSource {
    /// Parses a database URL (`postgres://`, `mysql://`, `mariadb://`,
    /// `sqlite://`); a relative SQLite path stays relative.
    ///
    /// # Errors
    ///
    /// The reason, with any password masked.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = sqlite_path(raw) {
            return path.map(|path| DatabaseSource::Sqlite { path });
        }
        let url =
            Url::parse(raw).map_err(|e| format!("bad database URL {}: {e}", redact::url(raw)))?;
        let (allowed, make): (&[&str], fn(ServerDatabase) -> Self) = match url.scheme() {
            "postgres" | "postgresql" => (PG_PARAMS, DatabaseSource::Postgres),
            "mysql" | "mariadb" => (MYSQL_PARAMS, DatabaseSource::Mysql),
            other => {
                return Err(format!(
                    "database URL {}: unsupported scheme {other:?}; use postgres://, mysql://, mariadb:// or sqlite://",
                    redact::url(raw)
                ));
            }
        };
        let decode = |s: &str| -> Result<String, String> {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("bad escape in {}", redact::url(raw)))
        };
        let database = decode(url.path().trim_start_matches('/'))?;
        if database.is_empty() || database.contains('/') || database.starts_with('-') {
            return Err(format!(
                "database URL {} must name one database, e.g. postgres://user@host/dbname",
                redact::url(raw)
            ));
        }
        let mut params = BTreeMap::new();
        for (k, v) in url.query_pairs() {
            if !allowed.contains(&k.as_ref()) {
                return Err(format!(
                    "database URL {}: unknown parameter {k:?} (known: {})",
                    redact::url(raw),
                    allowed.join(", ")
                ));
            }
            params.insert(k.into_owned(), v.into_owned());
        }
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(&decode)
            .transpose()?;
        let password = url
            .password()
            .map(&decode)
            .transpose()?
            .map(SecretString::from);
        Ok(make(ServerDatabase {
            host: url
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string()),
            port: url.port(),
            user,
            password,
            database,
            params,
            url: raw.to_string(),
        }))
    }

    fn default_name(&self) -> Option<String> {
        match self {
            DatabaseSource::Postgres(db) | DatabaseSource::Mysql(db) => Some(db.database.clone()),
            DatabaseSource::Sqlite { path } => {
                path.file_stem().map(|s| s.to_string_lossy().into_owned())
            }
        }
    }

    /// The engine's name as recorded in manifests.
    pub fn engine(&self) -> &'static str {
        match self {
            DatabaseSource::Postgres(_) => "postgresql",
            DatabaseSource::Mysql(_) => "mysql",
            DatabaseSource::Sqlite { .. } => "sqlite",
        }
    }

    /// The URL with any password masked.
    pub fn redacted_url(&self) -> String {
        match self {
            DatabaseSource::Postgres(db) | DatabaseSource::Mysql(db) => db.redacted_url(),
            DatabaseSource::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }
}

/// A database a restore drill may create and drop.
#[derive(Clone, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScratchDatabase(pub DatabaseSource);

impl TryFrom<String> for ScratchDatabase {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match DatabaseSource::parse(&value)? {
            DatabaseSource::Sqlite { .. } => Err(
                "verify_scratch takes postgres:// or mysql:// URLs; SQLite drills use a temporary file"
                    .into(),
            ),
            source => Ok(Self(source)),
        }
    }
}

impl From<ScratchDatabase> for String {
    fn from(value: ScratchDatabase) -> Self {
        value.0.redacted_url()
    }
}

impl fmt::Debug for ScratchDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.redacted_url())
    }
}

/// One directory tree to back up.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "MediaEntry", into = "MediaEntry")]
pub struct MediaTarget {
    /// Stable name: the directory's last component unless set.
    pub name: String,
    /// The directory (absolute after loading).
    pub path: PathBuf,
    /// Glob patterns left out of this archive (on top of the global ones).
    pub exclude: Vec<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum MediaEntry {
    Path(PathBuf),
    Named(NamedMedia),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NamedMedia {
    path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude: Vec<String>,
}

impl TryFrom<MediaEntry> for MediaTarget {
    type Error = String;

    fn try_from(entry: MediaEntry) -> Result<Self, Self::Error> {
        let (path, name, exclude) = match entry {
            MediaEntry::Path(path) => (path, None, Vec::new()),
            MediaEntry::Named(n) => (n.path, n.name, n.exclude),
        };
        if path.as_os_str().is_empty() {
            return Err("media_backup.paths: empty path".into());
        }
        let name = match name {
            Some(name) => name,
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    format!(
                        "cannot derive a target name from {}; set `name`",
                        path.display()
                    )
                })?,
        };
        check_target_name(&name)?;
        for pattern in &exclude {
            globset::Glob::new(pattern)
                .map_err(|e| format!("bad exclude glob {pattern:?}: {e}"))?;
        }
        Ok(Self {
            name,
            path,
            exclude,
        })
    }
}

impl From<MediaTarget> for MediaEntry {
    fn from(t: MediaTarget) -> Self {
        MediaEntry::Named(NamedMedia {
            path: t.path,
            name: Some(t.name),
            exclude: t.exclude,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        from_toml(text, Path::new("/etc/backup"))
    }

    #[test]
    fn defaults_match_the_reference_app() {
        let s = parse("").unwrap();
        assert!(s.enabled && s.email_on_success && s.email_on_failure);
        assert_eq!(s.history_retention_days, 90);
        assert_eq!(s.email_subject_prefix, "[Backup]");
        assert_eq!(s.database_backup.schedule.as_str(), "0 2 * * *");
        assert!(!s.media_backup.enabled);
        assert_eq!(s.media_backup.schedule.as_str(), "0 3 * * 0");
        assert_eq!(s.storage.keep, 10);
        let s = parse("admins = [\"root@localhost\", \"ops@example.com\"]").unwrap();
        assert_eq!(s.admins.len(), 2);
    }

    #[test]
    fn every_shipped_example_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                from_toml(&text, &dir).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(
            seen >= 2,
            "expected the example and quick-start configs, saw {seen}"
        );
        assert!(parse(EXAMPLE).is_ok());
    }

    #[test]
    fn targets_get_names_and_relative_paths_resolve_against_the_config_dir() {
        let s = parse(
            r#"
            history.url = "sqlite://state/history.db"
            storage.url = "file://backups"
            [database_backup]
            databases = ["postgres://app:pw@db:5433/shop", "sqlite://data/app.sqlite3",
                         { url = "mariadb://root@db/shop", name = "shop-mysql" }]
            [media_backup]
            paths = ["media", { path = "/srv/uploads", name = "up", exclude = ["*.tmp"] }]
            "#,
        )
        .unwrap();
        let names: Vec<_> = s
            .database_backup
            .databases
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["shop", "app", "shop-mysql"]);
        match &s.database_backup.databases[1].source {
            DatabaseSource::Sqlite { path } => {
                assert_eq!(path, Path::new("/etc/backup/data/app.sqlite3"))
            }
            _ => panic!("expected sqlite"),
        }
        match &s.database_backup.databases[0].source {
            DatabaseSource::Postgres(db) => {
                assert_eq!(
                    (db.host.as_deref(), db.port, db.user.as_deref()),
                    (Some("db"), Some(5433), Some("app"))
                );
                assert_eq!(
                    db.password
                        .as_ref()
                        .map(|p| p.expose_secret().to_string())
                        .as_deref(),
                    Some("pw")
                );
            }
            _ => panic!("expected postgres"),
        }
        assert_eq!(s.media_backup.paths[0].path, Path::new("/etc/backup/media"));
        assert_eq!(
            s.storage.url,
            StorageUrl::Fs {
                root: PathBuf::from("/etc/backup/backups")
            }
        );
        assert!(
            matches!(&s.history.url, HistoryUrl::Sqlite(p) if p == Path::new("/etc/backup/state/history.db"))
        );
    }

    #[test]
    fn errors_name_the_offending_key() {
        let cases = [
            ("databse_backup = {}", "databse_backup"),
            ("[database_backup]\nschedule = \"0 25 * * *\"", "0 25 * * *"),
            ("timezone = \"Mars/Olympus\"", "Mars/Olympus"),
            ("history_retention_days = 0", "history_retention_days"),
            ("[storage]\nkeep = 0", "storage.keep"),
            ("[storage]\nurl = \"ftp://x\"", "unsupported scheme"),
            (
                "[database_backup]\ndatabases = [\"oracle://x/y\"]",
                "unsupported scheme",
            ),
            (
                "[database_backup]\ndatabases = [\"postgres://h/db?sslmod=x\"]",
                "sslmod",
            ),
            (
                "[database_backup]\ndatabases = [\"postgres://h/a\", \"postgres://h2/a\"]",
                "two targets",
            ),
            (
                "[compression]\nalgorithm = \"zstd\"\nlevel = 40",
                "compression.level",
            ),
            ("admins = [\"not-an-address\"]", "not-an-address"),
            ("admins = [\"@localhost\"]", "@localhost"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn rendering_masks_every_secret() {
        let s = parse(
            r#"
            history.url = "postgres://hist:histpw@h/hist"
            [storage]
            url = "s3://bucket/pre"
            secret_access_key = "s3secretkey"
            [smtp]
            url = "smtp://mailer:mailpw@mail:587"
            from = "backups@example.com"
            [queue]
            url = "redis://:redispw@r:6379"
            [[webhooks]]
            url = "https://hooks.slack.com/services/T0/B0/hooktoken"
            [database_backup]
            databases = ["postgres://app:dbpw@db/app"]
            ping_url = "https://hc-ping.com/pinguuid"
            "#,
        )
        .unwrap();
        let out = s.to_redacted_toml();
        for secret in [
            "histpw",
            "s3secretkey",
            "mailpw",
            "redispw",
            "dbpw",
            "hooktoken",
            "pinguuid",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(out.contains("postgres://app:***@db/app"), "{out}");
        assert!(out.contains("https://hooks.slack.com/***"), "{out}");
        let debug = format!("{s:?}");
        for secret in ["dbpw", "mailpw", "hooktoken", "pinguuid"] {
            assert!(!debug.contains(secret), "{secret} leaked:\n{debug}");
        }
    }

    fn smtp(keys: &str) -> Result<SmtpEndpoint, ConfigError> {
        let s = parse(&format!("[smtp]\nfrom = \"b@example.com\"\n{keys}"))?;
        s.smtp.expect("smtp").endpoint()
    }

    #[test]
    fn smtp_urls_give_host_port_tls_and_credentials() {
        let e = smtp("url = \"smtp://mail.example.com\"").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("mail.example.com", 587));
        assert_eq!(e.security, SmtpSecurity::Opportunistic);
        assert!(e.credentials.is_none());
        let e = smtp("url = \"smtps://u%40x:p%3Aw@mail:2465\"").unwrap();
        assert_eq!((e.port, e.security), (2465, SmtpSecurity::Implicit));
        let (user, password) = e.credentials.clone().expect("credentials");
        assert_eq!((user.as_str(), password.expose_secret()), ("u@x", "p:w"));
        assert_eq!(
            e.to_string(),
            "smtps://u@x@mail:2465 (implicit TLS)",
            "shown without the password"
        );
        let e = smtp(
            "url = \"smtp://mail:25\"\ntls = \"required\"\nusername = \"u\"\npassword = \"pw\"",
        )
        .unwrap();
        assert_eq!((e.port, e.security), (25, SmtpSecurity::StartTls));
        let e = smtp("url = \"smtp://[::1]:2525\"\ntls = \"none\"").unwrap();
        assert_eq!((e.host.as_str(), e.security), ("::1", SmtpSecurity::Plain));
    }

    #[test]
    fn smtp_mistakes_are_refused_with_the_reason() {
        let cases = [
            ("url = \"http://mail\"", "not smtp:// or smtps://"),
            (
                "url = \"smtps://mail\"\ntls = \"none\"",
                "contradicts smtps://",
            ),
            (
                "url = \"smtp://u:pw@mail\"\npassword = \"pw2\"",
                "password is given both",
            ),
            ("url = \"smtp://u@mail\"", "no password"),
            ("url = \"smtp://mail/path\"", "without a path"),
            (
                "url = \"smtp://mail\"\ntimeout_seconds = 0",
                "timeout_seconds",
            ),
            (
                "url = \"smtp://u@mail\"\npassword_file = \"/nonexistent/pw\"",
                "cannot read it",
            ),
        ];
        for (keys, needle) in cases {
            let err = match smtp(keys) {
                Ok(e) => panic!("{keys:?} was accepted: {e}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(needle), "{keys:?} gave {err:?}");
            assert!(!err.contains("pw2"), "{err}");
        }
    }

    #[test]
    fn the_smtp_password_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("smtp-pw"), "from-file\n").unwrap();
        let s = from_toml(
            "[smtp]\nurl = \"smtp://u@mail\"\nfrom = \"b@example.com\"\npassword_file = \"smtp-pw\"\n",
            dir.path(),
        )
        .unwrap();
        let (_, password) = s.smtp.unwrap().endpoint().unwrap().credentials.unwrap();
        assert_eq!(password.expose_secret(), "from-file");
    }

    #[test]
    fn webhook_and_ping_urls_must_be_http() {
        for text in [
            "[[webhooks]]\nurl = \"ftp://x/y\"",
            "[[webhooks]]\nurl = \"not a url\"",
            "[database_backup]\nping_url = \"mailto:x@example.com\"",
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains("http:// or https://") || err.contains("relative URL"),
                "{text:?} gave {err}"
            );
        }
        let s = parse("[[webhooks]]\nurl = \"https://h/x\"\nformat = \"slack\"\non = [\"success\", \"failure\"]")
            .unwrap();
        assert_eq!(s.webhooks[0].format, WebhookFormat::Slack);
        assert_eq!(s.webhooks[0].on, [NotifyOn::Success, NotifyOn::Failure]);
        let s = parse("[[webhooks]]\nurl = \"https://h/x\"").unwrap();
        assert_eq!(s.webhooks[0].on, [NotifyOn::Failure]);
    }
}

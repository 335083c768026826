//! Settings: defaults, then the TOML file, then `BACKUP__...` environment
//! variables, parsed into domain types and validated at load time.
//!
//! The [`Settings`] tree and its loading live here; each section sits with
//! its defaults and checks in a file of its own: the plain sections
//! ([`sections`]), `[smtp]` ([`smtp`]), `[[webhooks]]` ([`webhooks`]), the
//! backup targets ([`targets`]), and the parsed value types they share
//! ([`values`]).

pub mod dashboard;
pub mod encryption;
pub mod error;
mod overrides;
pub mod sections;
pub mod smtp;
pub mod targets;
pub mod values;
pub mod webhooks;

#[cfg(test)]
mod tests;

use std::{
    collections::HashSet,
    env,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Format, Toml},
};
use serde::{Deserialize, Serialize};

pub use self::{
    dashboard::{DashboardSettings, DashboardToken, DashboardUser, ProxyNet, Role, TrustedHeader},
    encryption::EncryptionSettings,
    error::{CONFIG_ENV, ConfigError},
    sections::{
        CompressionSettings, HistorySettings, HostKeyCheck, HttpSettings, QueueSettings,
        RetentionPolicy, RetrySettings, StorageSettings, ToolSettings, WorkerSettings,
    },
    smtp::{SmtpEndpoint, SmtpSecurity, SmtpSettings, SmtpTls},
    targets::{
        DatabaseBackupSettings, DatabaseSource, DatabaseTarget, MediaBackupSettings, MediaTarget,
        ScratchDatabase, ServerDatabase, Target,
    },
    values::{EmailAddress, HistoryUrl, StorageUrl, Timezone},
    webhooks::{NotifyOn, WebhookFormat, WebhookSettings},
};
use self::{
    error::{check_range, invalid},
    overrides::{Overrides, describe},
};
use crate::{model::BackupType, redact, schedule::cron::CronSchedule};

/// The file read when neither `--config` nor `BACKUP_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "backup.toml";
/// Prefix of environment overrides: `BACKUP__SMTP__URL` sets `smtp.url`.
pub const ENV_PREFIX: &str = "BACKUP__";
/// The fully commented example configuration (`backup-cli config example`).
pub const EXAMPLE: &str = include_str!("../../examples/backup.example.toml");

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
    /// Whether and to whom artifacts are encrypted (age).
    pub encryption: EncryptionSettings,
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
    /// The worker's HTTP listener: `/healthz`, `/metrics` and the
    /// dashboard.
    pub http: HttpSettings,
    /// The web dashboard on `http.listen`.
    pub dashboard: DashboardSettings,
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
            encryption: EncryptionSettings::default(),
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
            dashboard: DashboardSettings::default(),
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
    let mut overrides = Overrides::from_env(ENV_PREFIX);
    let settings: Settings = loop {
        let mut figment = Figment::new();
        if exists {
            figment = figment.merge(Toml::file_exact(&file));
        }
        match figment.merge(overrides.clone()).extract_lossy() {
            Ok(settings) => break settings,
            // A variable for a string key is that text: read it so, again.
            Err(e) if overrides.learn(&e) => {}
            Err(e) => return Err(invalid(describe_all(e))),
        }
    };
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

/// Every load error, one after the other.
fn describe_all(errors: figment::Error) -> String {
    errors
        .into_iter()
        .map(|e| describe(&e))
        .collect::<Vec<_>>()
        .join("; ")
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
        .map_err(|e| invalid(describe_all(e)))?;
    settings.validated(base)
}

impl Settings {
    fn validated(mut self, base: &Path) -> Result<Self, ConfigError> {
        // A hundred years: any longer and the cutoff leaves the calendar.
        check_range(
            "history_retention_days",
            self.history_retention_days,
            1..=36_500,
        )?;
        self.history.validate(base);
        self.storage.validate(base)?;
        self.compression.validate()?;
        self.encryption.validate(base)?;
        self.tools.validate(base);
        if let Some(queue) = &self.queue {
            queue.validate()?;
        }
        self.retry.validate()?;
        self.worker.validate()?;
        self.http.validate()?;
        self.dashboard.validate()?;
        if let Some(smtp) = &mut self.smtp {
            smtp.validate(base)?;
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            hook.validate(i)?;
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
        self.database_backup.validate(base)?;
        self.media_backup.validate(base)?;
        self.register_secrets();
        Ok(self)
    }

    /// Tells the log scrubber every secret of this config, so that no log
    /// line shows one, whatever a dependency prints. Database passwords are
    /// registered when their URL is parsed, `--into` ones included.
    fn register_secrets(&self) {
        use secrecy::ExposeSecret;

        for key in [
            &self.storage.secret_access_key,
            &self.storage.account_key,
            &self.storage.password,
        ]
        .into_iter()
        .flatten()
        {
            redact::register(key.expose_secret());
        }
        if let HistoryUrl::Postgres(url) = &self.history.url {
            redact::register_url(url.expose_secret(), false);
        }
        if let Some(queue) = &self.queue {
            redact::register_url(queue.url.expose_secret(), false);
        }
        if let Some(smtp) = &self.smtp {
            redact::register_url(smtp.url.expose_secret(), false);
            if let Some(password) = &smtp.password {
                redact::register(password.expose_secret());
            }
        }
        self.dashboard.register_secrets();
        self.encryption.register_secrets();
        for hook in &self.webhooks {
            redact::register_url(hook.url.expose_secret(), true);
        }
        for ping in [&self.database_backup.ping_url, &self.media_backup.ping_url]
            .into_iter()
            .flatten()
        {
            redact::register_url(ping.expose_secret(), true);
        }
    }

    /// Why scheduled backups of `backup_type` do not fire, when they do
    /// not: the master switch (`enabled = false`) or the type's own
    /// `enabled`. Backups started by hand run either way.
    pub fn scheduled_off(&self, backup_type: BackupType) -> Option<&'static str> {
        if !self.enabled {
            return Some("enabled = false");
        }
        match backup_type {
            BackupType::Database if !self.database_backup.enabled => {
                Some("database_backup.enabled = false")
            }
            BackupType::Media if !self.media_backup.enabled => Some("media_backup.enabled = false"),
            _ => None,
        }
    }

    /// The configured targets of the given types, in that order, or only those
    /// named `name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when nothing is configured for those types, or no
    /// target has that name.
    pub fn targets<'a>(
        &'a self,
        types: &[BackupType],
        name: Option<&str>,
    ) -> Result<Vec<Target<'a>>, ConfigError> {
        let mut all = Vec::new();
        for backup_type in types {
            match backup_type {
                BackupType::Database => {
                    all.extend(self.database_backup.databases.iter().map(Target::Database))
                }
                BackupType::Media => all.extend(self.media_backup.paths.iter().map(Target::Media)),
            }
        }
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if all.is_empty() {
            let keys: Vec<&str> = types
                .iter()
                .map(|t| match t {
                    BackupType::Database => "database_backup.databases",
                    BackupType::Media => "media_backup.paths",
                })
                .collect();
            return invalid(format!(
                "no targets are configured; add some to {}",
                keys.join(" or ")
            ));
        }
        let Some(name) = name else { return Ok(all) };
        let known: Vec<String> = all
            .iter()
            .map(|t| format!("{} {}", t.backup_type(), t.name()))
            .collect();
        let chosen: Vec<Target<'a>> = all.into_iter().filter(|t| t.name() == name).collect();
        if chosen.is_empty() {
            return invalid(format!(
                "no target named {name:?}; configured: {}",
                known.join(", ")
            ));
        }
        Ok(chosen)
    }

    /// The effective configuration as TOML, every secret masked.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

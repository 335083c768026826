//! Telling people what happened: mail over SMTP (lettre), webhooks (JSON or
//! Slack), and dead-man's-switch pings (healthchecks.io style).
//!
//! Notifications never change a run's outcome. A send that fails is retried
//! a few times with backoff, logged, and its result kept on the run
//! (`notification`: `sent`, `failed: <reason>` or `skipped`). Nothing sent
//! carries a secret: run fields are redacted at the source, webhook and ping
//! URLs are only ever shown as `scheme://host/***`, and the SMTP password is
//! masked in every error.
//!
//! What a notice says is composed in [`message`] (pure); [`mail`],
//! [`webhook`] and [`ping`] deliver it, each try judged and retried by
//! one policy (`send`); [`Notifier`] here decides what is due and records
//! what became of the mail.

pub mod mail;
pub mod message;
pub mod ping;
pub(crate) mod send;
pub mod webhook;

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use chrono::Utc;
use secrecy::ExposeSecret;

pub use self::message::{Activity, Email, Notice, Sender};
use self::{
    message::{compose, test_email},
    send::{Retry, count},
};
use crate::{
    config::{EmailAddress, NotifyOn, Settings, SmtpSecurity, SmtpSettings},
    history::History,
    model::BackupType,
    redact,
};

/// What became of a mail; stored on the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The server accepted it.
    Sent,
    /// Every try failed; the reason (redacted).
    Failed(String),
    /// Not sent: turned off, no recipients, or no `[smtp]`.
    Skipped,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Sent => f.write_str("sent"),
            Delivery::Failed(reason) => write!(f, "failed: {reason}"),
            Delivery::Skipped => f.write_str("skipped"),
        }
    }
}

/// Sends notices: holds the settings, an HTTP client, and the retry policy.
#[derive(Debug, Clone)]
pub struct Notifier {
    settings: Settings,
    http: Http,
    retry: Retry,
    sender: Sender,
}

/// The HTTP client for webhooks and pings, built on first use: building it
/// reads the system's CA certificates (tens of milliseconds), which a run
/// with neither pays for nothing.
#[derive(Debug, Clone, Default)]
struct Http(Arc<OnceLock<reqwest::Client>>);

impl Http {
    fn client(&self) -> &reqwest::Client {
        self.0.get_or_init(|| {
            crate::install_crypto_provider();
            reqwest::Client::builder()
                .user_agent(concat!("backup-worker/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e.without_url(), "HTTP client set-up failed; using defaults");
                    reqwest::Client::new()
                })
        })
    }
}

impl Notifier {
    /// A notifier with the worker's retry policy (`retry.notification_*`).
    pub fn new(settings: &Settings) -> Self {
        Self {
            settings: settings.clone(),
            http: Http::default(),
            retry: Retry {
                attempts: settings.retry.notification_attempts.max(1),
                backoff: Duration::from_secs(settings.retry.notification_backoff_seconds),
            },
            sender: Sender::Worker,
        }
    }

    /// Names `sender` in the mails, as the program to look at.
    #[must_use]
    pub fn sent_by(mut self, sender: Sender) -> Self {
        self.sender = sender;
        self
    }

    /// One try per send: for the CLI, whose user is waiting.
    #[must_use]
    pub fn single_try(mut self) -> Self {
        self.retry.attempts = 1;
        self
    }

    /// Logs, once at start-up, which notifications are on, and warns about
    /// set-ups that lose mail or expose the SMTP password.
    pub fn log_setup(&self) {
        let s = &self.settings;
        match s.smtp.as_ref().map(SmtpSettings::endpoint) {
            None => tracing::info!("no [smtp] configured: no notification mail"),
            Some(Err(e)) => tracing::warn!(error = %e, "notification mail is misconfigured"),
            Some(Ok(endpoint)) => {
                if self.recipients().is_empty() {
                    tracing::warn!(
                        "[smtp] is configured but neither notification_emails nor admins is set: no mail will be sent"
                    );
                } else {
                    tracing::info!(
                        server = %endpoint,
                        recipients = self.recipients().len(),
                        on_success = s.email_on_success,
                        on_failure = s.email_on_failure,
                        "notification mail on"
                    );
                }
                if endpoint.credentials.is_some()
                    && matches!(
                        endpoint.security,
                        SmtpSecurity::Opportunistic | SmtpSecurity::Plain
                    )
                {
                    tracing::warn!(
                        server = %endpoint,
                        "the SMTP password may cross the network unencrypted; set smtp.tls = \"required\" or use smtps://"
                    );
                }
            }
        }
        for hook in &s.webhooks {
            tracing::info!(webhook = %redact::endpoint(hook.url.expose_secret()), on = ?hook.on, format = ?hook.format, "webhook on");
        }
        for (backup_type, url) in [
            (BackupType::Database, &s.database_backup.ping_url),
            (BackupType::Media, &s.media_backup.ping_url),
        ] {
            if let Some(url) = url {
                tracing::info!(%backup_type, ping = %redact::endpoint(url.expose_secret()), "dead-man's switch on");
            }
        }
    }

    /// Tells the dead-man's switch of `backup_type` that a run starts.
    pub async fn run_started(&self, backup_type: BackupType) {
        self.ping(backup_type, "/start").await;
    }

    /// Sends everything due for `notice` (mail, webhooks, ping) and records
    /// the mail's fate on its run. Never fails: problems are logged.
    pub async fn finished(&self, history: &History, notice: &Notice) -> Delivery {
        let suffix = match notice.event {
            NotifyOn::Success => "",
            NotifyOn::Failure => "/fail",
        };
        let backup = notice.activity == Activity::Backup;
        let ping = async {
            // The dead-man's switch watches backups, not verifications.
            if backup {
                self.ping(notice.backup_type, suffix).await;
            }
        };
        let (delivery, (), ()) = tokio::join!(self.mail(notice), self.webhooks(notice), ping);
        if let Some(run) = notice.run.as_ref().filter(|_| backup)
            && let Err(e) = history
                .set_notification(run.id, &delivery.to_string())
                .await
        {
            tracing::warn!(run_id = run.id, error = %e, "could not record the notification on the run");
        }
        delivery
    }

    /// Who gets mail: `notification_emails`, else `admins`.
    pub fn recipients(&self) -> &[EmailAddress] {
        if self.settings.notification_emails.is_empty() {
            &self.settings.admins
        } else {
            &self.settings.notification_emails
        }
    }

    async fn mail(&self, notice: &Notice) -> Delivery {
        let settings = &self.settings;
        let wanted = match notice.event {
            NotifyOn::Success => settings.email_on_success,
            NotifyOn::Failure => settings.email_on_failure,
        };
        if !wanted {
            return Delivery::Skipped;
        }
        let Some(smtp) = &settings.smtp else {
            tracing::debug!("no [smtp] configured; no mail sent");
            return Delivery::Skipped;
        };
        if self.recipients().is_empty() {
            tracing::warn!(
                "no mail sent: neither notification_emails nor admins is set (configure one to get mail)"
            );
            return Delivery::Skipped;
        }
        let email = compose(settings, notice, self.sender);
        let result = self
            .retry
            .run("mail", || async {
                mail::send(smtp, self.recipients(), &email)
                    .await
                    .map(|_| ())
            })
            .await;
        count("mail", result.is_ok());
        match result {
            Ok(()) => {
                tracing::info!(
                    recipients = self.recipients().len(),
                    subject = %email.subject,
                    "notification mail sent"
                );
                Delivery::Sent
            }
            Err(reason) => {
                tracing::error!(error = %reason, "notification mail failed; the run's outcome stands");
                Delivery::Failed(reason)
            }
        }
    }

    /// Sends a test mail and returns the server's reply, for `backup-cli
    /// notify test`.
    ///
    /// # Errors
    ///
    /// When nothing can be sent (no `[smtp]`, no recipients) or the server
    /// refuses; the error is redacted.
    pub async fn test_mail(&self) -> Result<MailTest, String> {
        let settings = &self.settings;
        let smtp = settings
            .smtp
            .as_ref()
            .ok_or("no [smtp] section is configured")?;
        if self.recipients().is_empty() {
            return Err("no recipients: set notification_emails or admins".into());
        }
        let endpoint = smtp.endpoint().map_err(|e| e.to_string())?;
        let email = test_email(settings, &endpoint, Utc::now(), self.sender);
        let reply = mail::send(smtp, self.recipients(), &email)
            .await
            .map_err(|e| e.reason)?;
        Ok(MailTest {
            server: endpoint.to_string(),
            recipients: self.recipients().iter().map(ToString::to_string).collect(),
            reply,
        })
    }

    /// Posts a test notice to every webhook; one result per webhook, as
    /// `(redacted url, outcome)`.
    pub async fn test_webhooks(&self) -> Vec<(String, Result<String, String>)> {
        let notice = Notice {
            activity: Activity::Backup,
            event: NotifyOn::Success,
            backup_type: BackupType::Database,
            target: "notify-test".into(),
            run: None,
            error: String::new(),
            at: Utc::now(),
        };
        let mut results = Vec::new();
        for hook in &self.settings.webhooks {
            let result = webhook::post(self.http.client(), &self.settings, hook, &notice)
                .await
                .map(|status| format!("HTTP {status}"))
                .map_err(|e| e.reason);
            results.push((redact::endpoint(hook.url.expose_secret()), result));
        }
        results
    }

    async fn webhooks(&self, notice: &Notice) {
        let due = self
            .settings
            .webhooks
            .iter()
            .filter(|hook| hook.on.contains(&notice.event));
        for hook in due {
            let shown = redact::endpoint(hook.url.expose_secret());
            let result = self
                .retry
                .run("webhook", || async {
                    webhook::post(self.http.client(), &self.settings, hook, notice)
                        .await
                        .map(|_| ())
                })
                .await;
            count("webhook", result.is_ok());
            match result {
                Ok(()) => tracing::info!(webhook = %shown, "webhook notified"),
                Err(reason) => {
                    tracing::error!(webhook = %shown, error = %reason, "webhook failed; the run's outcome stands")
                }
            }
        }
    }

    async fn ping(&self, backup_type: BackupType, suffix: &str) {
        let url = match backup_type {
            BackupType::Database => &self.settings.database_backup.ping_url,
            BackupType::Media => &self.settings.media_backup.ping_url,
        };
        let Some(url) = url else { return };
        let target = ping::url(url.expose_secret(), suffix);
        let shown = redact::endpoint(&target);
        let result = self
            .retry
            .run("ping", || ping::ping(self.http.client(), &target))
            .await;
        count("ping", result.is_ok());
        match result {
            Ok(()) => tracing::debug!(ping = %shown, what = suffix, "dead-man's switch pinged"),
            Err(reason) => {
                tracing::warn!(ping = %shown, what = suffix, error = %reason, "dead-man's switch ping failed")
            }
        }
    }
}

/// What `notify test` reports of a test mail.
#[derive(Debug, Clone)]
pub struct MailTest {
    /// `smtp://user@host:port (STARTTLS required)`.
    pub server: String,
    /// Who it went to.
    pub recipients: Vec<String>,
    /// The server's final reply, e.g. `250 OK`.
    pub reply: String,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn settings(extra: &str) -> Settings {
        crate::config::from_toml(
            &format!("{extra}\n[storage]\nurl = \"s3://bucket/nightly\"\n"),
            Path::new("/etc/backup"),
        )
        .expect("settings")
    }

    #[test]
    fn delivery_is_stored_as_sent_failed_or_skipped() {
        assert_eq!(Delivery::Sent.to_string(), "sent");
        assert_eq!(Delivery::Skipped.to_string(), "skipped");
        assert_eq!(
            Delivery::Failed("mail:25: Connection refused".into()).to_string(),
            "failed: mail:25: Connection refused"
        );
    }

    #[test]
    fn recipients_fall_back_to_admins() {
        let n = Notifier::new(&settings("admins = [\"root@example.com\"]"));
        assert_eq!(n.recipients().len(), 1);
        let n = Notifier::new(&settings(
            "admins = [\"root@example.com\"]\nnotification_emails = [\"ops@example.com\", \"dba@example.com\"]",
        ));
        let to: Vec<String> = n.recipients().iter().map(ToString::to_string).collect();
        assert_eq!(to, ["ops@example.com", "dba@example.com"]);
    }
}

//! Telling people what happened: mail over SMTP (lettre), webhooks (JSON or
//! Slack), and dead-man's-switch pings (healthchecks.io style).
//!
//! Notifications never change a run's outcome. A send that fails is retried
//! a few times with backoff, logged, and its result kept on the run
//! (`notification`: `sent`, `failed: <reason>` or `skipped`). Nothing sent
//! carries a secret: run fields are redacted at the source, webhook and ping
//! URLs are only ever shown as `scheme://host/***`, and the SMTP password is
//! masked in every error.

use std::{fmt, future::Future, time::Duration};

use chrono::{DateTime, Utc};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox,
        header::{ContentType, Header, HeaderName, HeaderValue},
    },
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        extension::ClientId,
    },
};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::{
    backup::human_bytes,
    config::{
        EmailAddress, NotifyOn, Settings, SmtpEndpoint, SmtpSecurity, SmtpSettings, WebhookFormat,
        WebhookSettings,
    },
    history::{BackupRun, BackupType, History, RunStatus},
    redact,
};

/// Limit of each dead-man's-switch ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The last line of every mail.
const FOOTER: &str = "This is an automated message from the backup scheduler (backup-worker).";

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    /// A backup job.
    Backup,
    /// A scheduled verification (or restore drill) of an artifact.
    Verification,
}

/// Something to tell people about: a successful run, a job that failed for
/// good, or an artifact that failed its scheduled verification.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Backup or verification.
    pub activity: Activity,
    /// Success or failure.
    pub event: NotifyOn,
    /// Database or media.
    pub backup_type: BackupType,
    /// Target name.
    pub target: String,
    /// The run (the job's last attempt); none when the job failed before a
    /// run was recorded (its target left the config, say).
    pub run: Option<BackupRun>,
    /// Why it failed (redacted); empty on success.
    pub error: String,
    /// Start time on failure, completion time on success.
    pub at: DateTime<Utc>,
}

impl Notice {
    /// The notice for a finished run: success or failure by its status.
    pub fn for_run(run: &BackupRun) -> Self {
        let success = run.status == RunStatus::Success;
        Self {
            activity: Activity::Backup,
            event: if success {
                NotifyOn::Success
            } else {
                NotifyOn::Failure
            },
            backup_type: run.backup_type,
            target: run.target.clone(),
            run: Some(run.clone()),
            error: run.error_message.clone(),
            at: if success {
                run.completed_at.unwrap_or(run.started_at)
            } else {
                run.started_at
            },
        }
    }

    /// The notice for a job that failed without recording a run.
    pub fn job_failed(
        backup_type: BackupType,
        target: &str,
        error: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            activity: Activity::Backup,
            event: NotifyOn::Failure,
            backup_type,
            target: target.to_string(),
            run: None,
            error: error.to_string(),
            at,
        }
    }

    /// The notice for an artifact that failed verification (or its drill).
    pub fn verification_failed(
        backup_type: BackupType,
        target: &str,
        run: Option<BackupRun>,
        error: &str,
    ) -> Self {
        Self {
            activity: Activity::Verification,
            event: NotifyOn::Failure,
            backup_type,
            target: target.to_string(),
            run,
            error: error.to_string(),
            at: Utc::now(),
        }
    }
}

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

/// A mail's subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// `[Backup] Database Backup Successful - 2026-11-26 02:00:45`.
    pub subject: String,
    /// UTF-8 text.
    pub body: String,
}

/// `Database` or `Media`.
fn title(backup_type: BackupType) -> &'static str {
    match backup_type {
        BackupType::Database => "Database",
        BackupType::Media => "Media",
    }
}

/// `2026-11-26 02:00:45` in the configured timezone.
fn timestamp(settings: &Settings, at: DateTime<Utc>) -> String {
    at.with_timezone(&settings.timezone.0)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The subject line of a notice (mail subject, Slack headline).
pub fn subject(settings: &Settings, notice: &Notice) -> String {
    let outcome = match notice.event {
        NotifyOn::Success => "Successful",
        NotifyOn::Failure => "FAILED",
    };
    let what = match notice.activity {
        Activity::Backup => "Backup",
        Activity::Verification => "Backup Verification",
    };
    format!(
        "{} {} {what} {outcome} - {}",
        settings.email_subject_prefix,
        title(notice.backup_type),
        timestamp(settings, notice.at)
    )
}

/// The mail for a notice, in the reference app's format plus the target and
/// artifact details.
pub fn compose(settings: &Settings, notice: &Notice) -> Email {
    let when = timestamp(settings, notice.at);
    let mut body = String::new();
    let mut line = |text: &str| {
        body.push_str(text);
        body.push('\n');
    };
    match notice.event {
        NotifyOn::Success => {
            line(&format!(
                "{} backup completed successfully.",
                title(notice.backup_type)
            ));
            line("");
            line(&format!("Timestamp: {when}"));
            let seconds = notice
                .run
                .as_ref()
                .and_then(|r| r.duration_seconds)
                .unwrap_or_default();
            line(&format!("Duration: {:.0} seconds", seconds.round()));
            line(&format!("Environment: {}", settings.environment));
            line(&format!("Storage Backend: {}", settings.storage.url));
            line(&format!("Target: {}", notice.target));
            if let Some(run) = &notice.run {
                line(&format!(
                    "Artifact: {}",
                    run.artifact.as_deref().unwrap_or_default()
                ));
                let size = run.size_bytes.unwrap_or_default().max(0) as u64;
                line(&format!("Size: {} ({size} bytes)", human_bytes(size)));
                line(&format!(
                    "SHA-256: {}",
                    run.sha256.as_deref().unwrap_or_default()
                ));
                line(&format!("Backup Run ID: {}", run.id));
            }
        }
        NotifyOn::Failure => {
            let verification = notice.activity == Activity::Verification;
            line(&format!(
                "⚠️ {} BACKUP{} FAILED ⚠️",
                title(notice.backup_type).to_uppercase(),
                if verification { " VERIFICATION" } else { "" }
            ));
            line("");
            line(&format!("Timestamp: {when}"));
            line(&format!("Environment: {}", settings.environment));
            line(&format!("Target: {}", notice.target));
            if let Some(run) = notice.run.as_ref().filter(|_| !verification) {
                line(&format!("Attempts: {}", run.attempt));
            }
            line(&format!("Error: {}", notice.error));
            line("");
            line("Please investigate this issue immediately.");
            match &notice.run {
                Some(run) if verification => {
                    line("");
                    line(&format!("Backup Run ID: {}", run.id));
                    line(&format!(
                        "Full details: backup-cli verify --run {} (and the backup-worker log)",
                        run.id
                    ));
                }
                Some(run) => {
                    line("");
                    line(&format!("Backup Run ID: {}", run.id));
                    line(&format!(
                        "Full details: backup-cli runs show {} (and the backup-worker log)",
                        run.id
                    ));
                }
                None => {
                    line("");
                    line("Backup Run ID: none (the job failed before a run was recorded)");
                    line("Full details: the backup-worker log");
                }
            }
        }
    }
    line("");
    // No final newline: lettre ends the data with CRLF itself.
    body.push_str(FOOTER);
    Email {
        subject: subject(settings, notice),
        body,
    }
}

/// The documented JSON body of a `format = "json"` webhook.
pub fn webhook_json(settings: &Settings, notice: &Notice) -> serde_json::Value {
    let run = notice.run.as_ref();
    json!({
        "event": notice.event,
        "activity": notice.activity,
        "summary": subject(settings, notice),
        "environment": settings.environment,
        "backup_type": notice.backup_type,
        "target": notice.target,
        "status": match notice.event {
            NotifyOn::Success => "success",
            NotifyOn::Failure => "failed",
        },
        "timestamp": notice.at,
        "error": (!notice.error.is_empty()).then_some(&notice.error),
        "storage": settings.storage.url.to_string(),
        "run": run.map(|r| json!({
            "id": r.id,
            "trigger": r.trigger,
            "attempt": r.attempt,
            "scheduled_for": r.scheduled_for,
            "task_id": r.task_id,
            "worker": r.worker,
            "started_at": r.started_at,
            "completed_at": r.completed_at,
            "duration_seconds": r.duration_seconds,
            "artifact": r.artifact,
            "size_bytes": r.size_bytes,
            "sha256": r.sha256,
        })),
        "details": run.map(|r| format!("backup-cli runs show {}", r.id)),
    })
}

/// Escapes text for Slack's mrkdwn.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body of a `format = "slack"` webhook: `{"text": ...}`.
pub fn webhook_slack(settings: &Settings, notice: &Notice) -> serde_json::Value {
    let icon = match notice.event {
        NotifyOn::Success => ":white_check_mark:",
        NotifyOn::Failure => ":rotating_light:",
    };
    let mut text = format!(
        "{icon} *{}*\nTarget: `{}`\nEnvironment: {}",
        slack_escape(&subject(settings, notice)),
        slack_escape(&notice.target),
        slack_escape(&settings.environment)
    );
    if let Some(run) = &notice.run {
        match notice.event {
            NotifyOn::Success => {
                let size = run.size_bytes.unwrap_or_default().max(0) as u64;
                text.push_str(&format!(
                    "\nDuration: {:.0} seconds\nSize: {}",
                    run.duration_seconds.unwrap_or_default().round(),
                    human_bytes(size)
                ));
            }
            NotifyOn::Failure => text.push_str(&format!("\nAttempts: {}", run.attempt)),
        }
    }
    if !notice.error.is_empty() {
        text.push_str(&format!("\nError: {}", slack_escape(&notice.error)));
    }
    if let Some(run) = &notice.run {
        text.push_str(&format!(
            "\nBackup Run ID: {} (`backup-cli runs show {}`)",
            run.id, run.id
        ));
    }
    json!({ "text": text })
}

/// Why one try of a send failed, and whether another try may help.
struct SendError {
    reason: String,
    retry: bool,
}

/// Sends notices: holds the settings, an HTTP client, and the retry policy.
#[derive(Debug, Clone)]
pub struct Notifier {
    settings: Settings,
    http: reqwest::Client,
    attempts: u32,
    backoff: Duration,
}

impl Notifier {
    /// A notifier with the worker's retry policy (`retry.notification_*`).
    pub fn new(settings: &Settings) -> Self {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("backup-worker/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e.without_url(), "HTTP client set-up failed; using defaults");
                reqwest::Client::new()
            });
        Self {
            settings: settings.clone(),
            http,
            attempts: settings.retry.notification_attempts.max(1),
            backoff: Duration::from_secs(settings.retry.notification_backoff_seconds),
        }
    }

    /// One try per send: for the CLI, whose user is waiting.
    #[must_use]
    pub fn single_try(mut self) -> Self {
        self.attempts = 1;
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
        let email = compose(settings, notice);
        let result = self
            .retrying("mail", || async {
                self.send_mail(smtp, &email).await.map(|_| ())
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

    /// Sends `email` to the recipients once; returns the server's reply.
    async fn send_mail(&self, smtp: &SmtpSettings, email: &Email) -> Result<String, SendError> {
        let permanent = |reason: String| SendError {
            reason,
            retry: false,
        };
        let endpoint = smtp.endpoint().map_err(|e| permanent(e.to_string()))?;
        let message = self
            .message(smtp, email)
            .map_err(|e| permanent(format!("cannot build the message: {e}")))?;
        let transport = transport(smtp, &endpoint).map_err(permanent)?;
        let secret = endpoint
            .credentials
            .as_ref()
            .map(|(_, p)| p.expose_secret().to_string())
            .unwrap_or_default();
        // lettre's own timeout covers connecting only; bound the dialogue.
        let limit = Duration::from_secs(smtp.timeout_seconds);
        let Ok(sent) = tokio::time::timeout(limit, transport.send(message)).await else {
            return Err(SendError {
                reason: format!(
                    "{}: timed out after {} s (smtp.timeout_seconds)",
                    endpoint_label(&endpoint),
                    smtp.timeout_seconds
                ),
                retry: true,
            });
        };
        match sent {
            Ok(response) => Ok(format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => Err(SendError {
                // 5xx replies (auth refused, recipient rejected) stay so.
                retry: !e.is_permanent(),
                reason: redact::text(
                    &format!("{}: {}", endpoint_label(&endpoint), full_chain(&e)),
                    &[&secret],
                ),
            }),
        }
    }

    fn message(&self, smtp: &SmtpSettings, email: &Email) -> Result<Message, String> {
        let from: Mailbox = smtp.from.to_string().parse().map_err(|e| format!("{e}"))?;
        let domain = smtp
            .from
            .to_string()
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| "localhost".into());
        let mut builder = Message::builder()
            .from(from)
            .subject(email.subject.clone())
            .date_now()
            .message_id(Some(format!(
                "<{}@{domain}>",
                uuid::Uuid::new_v4().simple()
            )))
            .header(AutoSubmitted)
            .header(ContentType::TEXT_PLAIN);
        for to in self.recipients() {
            let mailbox: Mailbox = to.to_string().parse().map_err(|e| format!("{to}: {e}"))?;
            builder = builder.to(mailbox);
        }
        builder.body(email.body.clone()).map_err(|e| e.to_string())
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
        let email = Email {
            subject: format!(
                "{} Test notification - {}",
                settings.email_subject_prefix,
                timestamp(settings, Utc::now())
            ),
            body: format!(
                "This is a test of the backup notifications.\n\nEnvironment: {}\nStorage \
                 Backend: {}\nSent through: {endpoint}\n\nIf you can read this, success and \
                 failure mails will reach you.\n\n{FOOTER}",
                settings.environment, settings.storage.url
            ),
        };
        let reply = self.send_mail(smtp, &email).await.map_err(|e| e.reason)?;
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
            let result = self
                .post(hook, &notice)
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
                .retrying("webhook", || async {
                    self.post(hook, notice).await.map(|_| ())
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

    /// Posts `notice` to one webhook once; returns the HTTP status.
    async fn post(&self, hook: &WebhookSettings, notice: &Notice) -> Result<u16, SendError> {
        let body = match hook.format {
            WebhookFormat::Json => webhook_json(&self.settings, notice),
            WebhookFormat::Slack => webhook_slack(&self.settings, notice),
        };
        let request = self
            .http
            .post(hook.url.expose_secret())
            .timeout(Duration::from_secs(hook.timeout_seconds))
            .json(&body);
        http_result(request.send().await)
    }

    async fn ping(&self, backup_type: BackupType, suffix: &str) {
        let url = match backup_type {
            BackupType::Database => &self.settings.database_backup.ping_url,
            BackupType::Media => &self.settings.media_backup.ping_url,
        };
        let Some(url) = url else { return };
        let base = url.expose_secret().trim_end_matches('/');
        let target = format!("{base}{suffix}");
        let shown = redact::endpoint(&target);
        let result = self
            .retrying("ping", || async {
                http_result(self.http.get(&target).timeout(PING_TIMEOUT).send().await).map(|_| ())
            })
            .await;
        count("ping", result.is_ok());
        match result {
            Ok(()) => tracing::debug!(ping = %shown, what = suffix, "dead-man's switch pinged"),
            Err(reason) => {
                tracing::warn!(ping = %shown, what = suffix, error = %reason, "dead-man's switch ping failed")
            }
        }
    }

    /// Runs `send` until it succeeds, fails for good, or has been tried
    /// `attempts` times, waiting `backoff` (doubling) in between.
    async fn retrying<F, Fut>(&self, what: &str, mut send: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), SendError>>,
    {
        let mut attempt = 1;
        loop {
            match send().await {
                Ok(()) => return Ok(()),
                Err(e) if !e.retry || attempt >= self.attempts => return Err(e.reason),
                Err(e) => {
                    let wait = self.backoff * (1 << (attempt - 1).min(10));
                    tracing::warn!(what, attempt, retry_in_seconds = wait.as_secs(), error = %e.reason, "notification failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Counts a notification in `backup_notifications_total{channel, outcome}`.
fn count(channel: &'static str, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    metrics::counter!("backup_notifications_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
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

/// An HTTP response as a send result: 2xx is success; 408, 429 and 5xx are
/// worth another try, other statuses are not. Errors never show the URL.
fn http_result(response: Result<reqwest::Response, reqwest::Error>) -> Result<u16, SendError> {
    match response {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => {
            let status = r.status();
            Err(SendError {
                reason: format!("HTTP {status}"),
                retry: status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            })
        }
        Err(e) => Err(SendError {
            reason: full_chain(&e.without_url()),
            retry: true,
        }),
    }
}

/// An error and its sources on one line.
fn full_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    crate::backup::one_line(&text)
}

fn endpoint_label(endpoint: &SmtpEndpoint) -> String {
    format!("{}:{}", endpoint.host, endpoint.port)
}

/// The lettre transport for `[smtp]`, TLS as configured.
fn transport(
    smtp: &SmtpSettings,
    endpoint: &SmtpEndpoint,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = || -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(endpoint.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("smtp.ca_file {}: {e}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| format!("TLS set-up: {e}"))
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
        .port(endpoint.port)
        .timeout(Some(Duration::from_secs(smtp.timeout_seconds)))
        .hello_name(hello_name())
        .tls(match endpoint.security {
            SmtpSecurity::Implicit => Tls::Wrapper(tls()?),
            SmtpSecurity::StartTls => Tls::Required(tls()?),
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls()?),
            SmtpSecurity::Plain => Tls::None,
        });
    if let Some((user, password)) = &endpoint.credentials {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_string(),
        ));
    }
    Ok(builder.build())
}

/// This host's name for EHLO, when it is a usable domain name.
fn hello_name() -> ClientId {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let usable = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    ClientId::Domain(if usable { host } else { "localhost".into() })
}

/// `Auto-Submitted: auto-generated` (RFC 3834): tells mail servers and
/// vacation responders that a program sent this.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::history::Trigger;

    fn settings(extra: &str) -> Settings {
        crate::config::from_toml(
            &format!(
                "environment = \"prod\"\ntimezone = \"Europe/Rome\"\n{extra}\n\
                 [storage]\nurl = \"s3://bucket/nightly\"\n"
            ),
            Path::new("/etc/backup"),
        )
        .expect("settings")
    }

    fn run(status: RunStatus) -> BackupRun {
        let started: DateTime<Utc> = "2026-11-26T01:00:00Z".parse().expect("time");
        let success = status == RunStatus::Success;
        BackupRun {
            id: 123,
            backup_type: BackupType::Database,
            target: "shop".into(),
            status,
            trigger: Trigger::Schedule,
            scheduled_for: Some(started),
            task_id: Some("t1".into()),
            attempt: 3,
            worker: "host:1".into(),
            started_at: started,
            completed_at: Some(started + chrono::TimeDelta::milliseconds(45_400)),
            duration_seconds: Some(45.4),
            error_message: if success {
                String::new()
            } else {
                "pg_dump: connection refused".into()
            },
            artifact: success.then(|| "database/shop/x.dump.zst".into()),
            size_bytes: success.then_some(1_572_864),
            sha256: success.then(|| "ab".repeat(32)),
            notification: None,
            verified_at: None,
            verify_result: None,
        }
    }

    #[test]
    fn success_mail_matches_the_reference_format() {
        let s = settings("");
        let mail = compose(&s, &Notice::for_run(&run(RunStatus::Success)));
        // Completion time, in the configured timezone (UTC+1 in November).
        assert_eq!(
            mail.subject,
            "[Backup] Database Backup Successful - 2026-11-26 02:00:45"
        );
        let expected = format!(
            "Database backup completed successfully.\n\n\
             Timestamp: 2026-11-26 02:00:45\n\
             Duration: 45 seconds\n\
             Environment: prod\n\
             Storage Backend: s3://bucket/nightly\n\
             Target: shop\n\
             Artifact: database/shop/x.dump.zst\n\
             Size: 1.5 MiB (1572864 bytes)\n\
             SHA-256: {}\n\
             Backup Run ID: 123\n\n{FOOTER}",
            "ab".repeat(32)
        );
        assert_eq!(mail.body, expected);
    }

    #[test]
    fn failure_mail_matches_the_reference_format() {
        let s = settings("email_subject_prefix = \"[Prod DB]\"");
        let mut notice = Notice::for_run(&run(RunStatus::Failed));
        notice.backup_type = BackupType::Media;
        let mail = compose(&s, &notice);
        // Start time on failure.
        assert_eq!(
            mail.subject,
            "[Prod DB] Media Backup FAILED - 2026-11-26 02:00:00"
        );
        let expected = format!(
            "⚠️ MEDIA BACKUP FAILED ⚠️\n\n\
             Timestamp: 2026-11-26 02:00:00\n\
             Environment: prod\n\
             Target: shop\n\
             Attempts: 3\n\
             Error: pg_dump: connection refused\n\n\
             Please investigate this issue immediately.\n\n\
             Backup Run ID: 123\n\
             Full details: backup-cli runs show 123 (and the backup-worker log)\n\n{FOOTER}"
        );
        assert_eq!(mail.body, expected);
    }

    #[test]
    fn webhook_bodies_carry_the_event_and_escape_slack_markup() {
        let s = settings("");
        let mut failed = run(RunStatus::Failed);
        failed.error_message = "table <users> & friends".into();
        let notice = Notice::for_run(&failed);
        let body = webhook_json(&s, &notice);
        assert_eq!(body["event"], "failure");
        assert_eq!(body["status"], "failed");
        assert_eq!(body["environment"], "prod");
        assert_eq!(body["run"]["id"], 123);
        assert_eq!(body["run"]["attempt"], 3);
        assert_eq!(body["error"], "table <users> & friends");
        assert_eq!(body["details"], "backup-cli runs show 123");
        let slack = webhook_slack(&s, &notice);
        let text = slack["text"].as_str().expect("text");
        assert!(
            text.starts_with(
                ":rotating_light: *[Backup] Database Backup FAILED - 2026-11-26 02:00:00*"
            ),
            "{text}"
        );
        assert!(
            text.contains("Error: table &lt;users&gt; &amp; friends"),
            "{text}"
        );
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

//! What a notice says: the mail (the reference app's subject and body
//! formats), the JSON and Slack webhook bodies. Pure: settings and a notice
//! in, text out.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{
    config::{NotifyOn, Settings, SmtpEndpoint},
    history::BackupRun,
    model::{BackupType, RunStatus, human_bytes},
};

/// The program that sends a notice, named in the mail so the reader knows
/// where to look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sender {
    /// The long-running worker (its log holds the details).
    #[default]
    Worker,
    /// `backup-cli`, run by an operator (its output holds the details).
    Cli,
}

impl Sender {
    /// `backup-worker` or `backup-cli`.
    pub fn program(self) -> &'static str {
        match self {
            Sender::Worker => "backup-worker",
            Sender::Cli => "backup-cli",
        }
    }

    /// Where the details of what it did are.
    fn details(self) -> &'static str {
        match self {
            Sender::Worker => "the backup-worker log",
            Sender::Cli => "the backup-cli output",
        }
    }

    /// The last line of every mail it sends.
    pub fn footer(self) -> String {
        format!(
            "This is an automated message from the backup scheduler ({}).",
            self.program()
        )
    }
}

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
pub fn compose(settings: &Settings, notice: &Notice, sender: Sender) -> Email {
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
                        "Full details: backup-cli verify --run {} (and {})",
                        run.id,
                        sender.details()
                    ));
                }
                Some(run) => {
                    line("");
                    line(&format!("Backup Run ID: {}", run.id));
                    line(&format!(
                        "Full details: backup-cli runs show {} (and {})",
                        run.id,
                        sender.details()
                    ));
                }
                None => {
                    line("");
                    line("Backup Run ID: none (the job failed before a run was recorded)");
                    line(&format!("Full details: {}", sender.details()));
                }
            }
        }
    }
    line("");
    // No final newline: lettre ends the data with CRLF itself.
    body.push_str(&sender.footer());
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

/// The test mail of `backup-cli notify test`, sent through `server`.
pub fn test_email(
    settings: &Settings,
    server: &SmtpEndpoint,
    at: DateTime<Utc>,
    sender: Sender,
) -> Email {
    Email {
        subject: format!(
            "{} Test notification - {}",
            settings.email_subject_prefix,
            timestamp(settings, at)
        ),
        body: format!(
            "This is a test of the backup notifications.\n\nEnvironment: {}\nStorage \
             Backend: {}\nSent through: {server}\n\nIf you can read this, success and \
             failure mails will reach you.\n\n{}",
            settings.environment,
            settings.storage.url,
            sender.footer()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::Trigger;

    const FOOTER: &str = "This is an automated message from the backup scheduler (backup-worker).";

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
            triggered_by: None,
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
        let mail = compose(
            &s,
            &Notice::for_run(&run(RunStatus::Success)),
            Sender::Worker,
        );
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
        let mail = compose(&s, &notice, Sender::Worker);
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
    fn a_mail_sent_by_the_cli_names_the_cli() {
        let s = settings("");
        let mail = compose(&s, &Notice::for_run(&run(RunStatus::Failed)), Sender::Cli);
        assert!(
            mail.body
                .contains("Full details: backup-cli runs show 123 (and the backup-cli output)"),
            "{}",
            mail.body
        );
        assert!(
            mail.body
                .ends_with("This is an automated message from the backup scheduler (backup-cli)."),
            "{}",
            mail.body
        );
        assert!(!mail.body.contains("backup-worker"), "{}", mail.body);
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
}

//! Notifications: mail to a real SMTP server (plain, STARTTLS with a
//! private CA, implicit TLS, AUTH), webhooks and dead-man's-switch pings to
//! a real HTTP listener, from the CLI and from a real worker on Redis.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{sinks::*, support::*, worker_support::*};

/// The last line of a mail sent by `backup-cli`.
const FOOTER: &str = "This is an automated message from the backup scheduler (backup-cli).";

/// `[smtp]` for a sink without TLS, plus `extra` keys.
fn smtp(sink: &SmtpSink, extra: &str) -> String {
    format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{}\"\ntls = \"none\"\nfrom = \"backups@example.com\"\n\
         timeout_seconds = 5\n{extra}\n",
        sink.port
    )
}

/// `[database_backup]` with one SQLite target per name, all the sample db.
fn sqlite_targets(names: &[&str]) -> String {
    let list: Vec<String> = names
        .iter()
        .map(|n| format!("{{ name = \"{n}\", url = \"sqlite://app.sqlite3\" }}"))
        .collect();
    format!("[database_backup]\ndatabases = [{}]\n", list.join(", "))
}

/// `2026-11-26 02:00:45` in Europe/Rome, from an RFC 3339 field of a run.
fn rome(run: &Value, key: &str) -> String {
    let at: DateTime<Utc> = run[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {run}"))
        .parse()
        .expect("RFC 3339");
    at.with_timezone(&chrono_tz::Europe::Rome)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn run_json(sandbox: &Sandbox, id: &Value) -> Value {
    sandbox
        .cli(&["runs", "show", &id.to_string(), "--json"])
        .success()
        .json()
}

#[test]
fn a_batch_of_targets_sends_one_success_mail_per_run_in_the_reference_format() {
    let sink = SmtpSink::start(SmtpOptions::default());
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    sandbox.config(&format!(
        "environment = \"prod\"\ntimezone = \"Europe/Rome\"\n\
         notification_emails = [\"ops@example.com\", \"dba@example.com\"]\n\
         admins = [\"root@example.com\"]\n\n{}\n{}",
        // The sender as Django's DEFAULT_FROM_EMAIL often is.
        smtp(&sink, "").replace(
            "from = \"backups@example.com\"",
            "from = \"Backup Robot <backups@example.com>\""
        ),
        sqlite_targets(&["one", "two", "three"])
    ));

    let out = sandbox.cli(&["backup", "database", "--json"]).success();
    let runs = out.json();
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len(), 3);
    let mails = sink.mails();
    assert_eq!(mails.len(), 3, "one mail per run: {mails:#?}");

    let storage = format!("file://{}", sandbox.storage().display());
    for mail in &mails {
        assert_eq!(
            mail.header("From"),
            Some("Backup Robot <backups@example.com>"),
            "{mail:#?}"
        );
        let id = mail.header("Message-ID").expect("Message-ID");
        assert!(id.ends_with("@example.com>"), "{id}");
    }
    for run in runs {
        assert_eq!(run["status"], "success");
        let target = run["target"].as_str().expect("target");
        let mail = mails
            .iter()
            .find(|m| m.body().contains(&format!("\nTarget: {target}\n")))
            .unwrap_or_else(|| panic!("no mail for {target}: {mails:#?}"));
        let completed = rome(run, "completed_at");
        assert_eq!(
            mail.subject(),
            format!("[Backup] Database Backup Successful - {completed}")
        );
        let size = run["size_bytes"].as_i64().expect("size");
        let body = mail.body();
        let lines: Vec<&str> = body.lines().collect();
        let seconds = run["duration_seconds"].as_f64().expect("duration").round();
        let expected = [
            "Database backup completed successfully.".to_string(),
            String::new(),
            format!("Timestamp: {completed}"),
            format!("Duration: {seconds:.0} seconds"),
            "Environment: prod".into(),
            format!("Storage Backend: {storage}"),
            format!("Target: {target}"),
            format!("Artifact: {}", run["artifact"].as_str().expect("artifact")),
        ];
        assert_eq!(lines[..8], expected[..], "{body}");
        assert!(
            lines[8].starts_with("Size: ") && lines[8].ends_with(&format!(" ({size} bytes)")),
            "{body}"
        );
        assert_eq!(
            lines[9..],
            [
                format!("SHA-256: {}", run["sha256"].as_str().expect("sha")).as_str(),
                &format!("Backup Run ID: {}", run["id"]),
                "",
                FOOTER
            ],
            "{body}"
        );
        // Envelope and headers.
        assert_eq!(mail.meta["mail_from"], "backups@example.com");
        assert_eq!(mail.recipients(), ["ops@example.com", "dba@example.com"]);
        let to = mail.header("To").expect("To");
        assert!(
            to.contains("ops@example.com") && to.contains("dba@example.com"),
            "{to}"
        );
        assert!(
            !to.contains("root@example.com"),
            "admins are the fallback only"
        );
        assert!(mail.header("Date").is_some(), "{}", mail.raw);
        let id = mail.header("Message-ID").expect("Message-ID");
        assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
        assert_eq!(mail.meta["content_type"], "text/plain");
        assert_eq!(mail.meta["charset"], "utf-8");
        assert_eq!(mail.header("Auto-Submitted"), Some("auto-generated"));
        // The outcome of the mail is kept on the run.
        assert_eq!(run["notification"], "sent");
        assert_eq!(run_json(&sandbox, &run["id"])["notification"], "sent");
    }
    let ids: Vec<&str> = mails
        .iter()
        .map(|m| m.header("Message-ID").expect("id"))
        .collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
}

#[test]
fn a_failed_backup_mails_the_admins_in_the_reference_format_and_keeps_its_exit_code() {
    let sink = SmtpSink::start(SmtpOptions::default());
    let sandbox = Sandbox::new();
    let missing = unique("missing");
    sandbox.config(&format!(
        "environment = \"staging\"\ntimezone = \"Europe/Rome\"\n\
         admins = [\"root@example.com\"]\n\n{}\n\
         [database_backup]\ndatabases = [{{ name = \"shop\", url = \"{PG_URL}/{missing}\" }}]\n",
        smtp(&sink, "")
    ));

    let out = sandbox.cli(&["backup", "database", "--json"]);
    assert_eq!(out.code, 1, "the backup failed: {}", out.all());
    let runs = out.json();
    let run = &runs[0];
    assert_eq!(run["status"], "failed");
    let mail = only_mail(&sink);
    assert_eq!(mail.recipients(), ["root@example.com"]);
    let started = rome(run, "started_at");
    assert_eq!(
        mail.subject(),
        format!("[Backup] Database Backup FAILED - {started}")
    );
    let error = run["error_message"].as_str().expect("error");
    assert!(error.contains("does not exist"), "{error}");
    let id = &run["id"];
    let expected = format!(
        "⚠️ DATABASE BACKUP FAILED ⚠️\n\n\
         Timestamp: {started}\n\
         Environment: staging\n\
         Target: shop\n\
         Attempts: 1\n\
         Error: {error}\n\n\
         Please investigate this issue immediately.\n\n\
         Backup Run ID: {id}\n\
         Full details: backup-cli runs show {id} (and the backup-cli output)\n\n\
         {FOOTER}\n"
    );
    assert_eq!(mail.body(), expected);
    // UTF-8 travels encoded (7-bit safe), and decodes back intact.
    assert!(!mail.raw.contains('⚠'), "raw body is not transfer-encoded");
    assert_eq!(run["notification"], "sent");
}

fn only_mail(sink: &SmtpSink) -> Mail {
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "expected one mail: {mails:#?}");
    mails.into_iter().next().expect("one mail")
}

#[test]
fn toggles_and_missing_recipients_skip_the_mail_and_say_so() {
    let sink = SmtpSink::start(SmtpOptions::default());
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let missing = unique("missing");
    let targets = format!(
        "[database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://app.sqlite3\" }}, \
         {{ name = \"gone\", url = \"{PG_URL}/{missing}\" }}]\n"
    );
    let check = |top: &str, app: &str, gone: &str| {
        sandbox.config(&format!("{top}\n{}\n{targets}", smtp(&sink, "")));
        let out = sandbox.cli(&["backup", "database", "--json"]);
        assert_eq!(out.code, 1, "{}", out.all());
        let runs = out.json();
        assert_eq!(runs[0]["notification"], app, "{top}");
        assert_eq!(runs[1]["notification"], gone, "{top}");
        out
    };

    check(
        "admins = [\"root@example.com\"]\nemail_on_success = false",
        "skipped",
        "sent",
    );
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].subject().contains("FAILED"));

    check(
        "admins = [\"root@example.com\"]\nemail_on_failure = false",
        "sent",
        "skipped",
    );
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    assert!(mails[1].subject().contains("Successful"));

    let out = check("", "skipped", "skipped");
    assert!(
        out.stderr
            .contains("neither notification_emails nor admins is set"),
        "{}",
        out.stderr
    );
    assert_eq!(sink.mails().len(), 2, "nothing more was sent");
}

#[test]
fn an_smtp_server_that_is_down_refuses_login_or_stalls_never_changes_the_backup() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let targets = sqlite_targets(&["app"]);
    let backup = |smtp: &str| {
        sandbox.config(&format!(
            "admins = [\"root@example.com\"]\n{smtp}\n{targets}"
        ));
        let out = sandbox.cli(&["backup", "database", "--json"]).success();
        let runs = out.json();
        assert_eq!(runs[0]["status"], "success", "{}", out.all());
        assert!(
            run_json(&sandbox, &runs[0]["id"])["artifact"].is_string(),
            "the backup itself is whole"
        );
        (
            runs[0]["notification"]
                .as_str()
                .expect("notification")
                .to_string(),
            out,
        )
    };

    // Down: nothing listens.
    let port = closed_port();
    let (note, out) = backup(&format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{port}\"\nfrom = \"b@example.com\"\n"
    ));
    assert!(
        note.starts_with("failed: 127.0.0.1:") && note.contains("Connection refused"),
        "{note}"
    );
    assert!(
        out.stderr.contains("notification mail failed"),
        "{}",
        out.stderr
    );

    // Refused login (535).
    let sink = SmtpSink::start(SmtpOptions {
        auth: Some("mailer:right-password".into()),
        auth_without_tls: true,
        ..SmtpOptions::default()
    });
    let (note, _) = backup(&format!(
        "[smtp]\nurl = \"smtp://mailer:wrong-password@127.0.0.1:{}\"\ntls = \"none\"\n\
         from = \"b@example.com\"\n",
        sink.port
    ));
    assert!(
        note.starts_with("failed: ") && note.contains("535"),
        "{note}"
    );
    assert!(!note.contains("wrong-password"), "{note}");
    assert!(sink.mails().is_empty());

    // A server that never answers DATA: the client's timeout ends it.
    let sink = SmtpSink::start(SmtpOptions {
        delay: 30.0,
        ..SmtpOptions::default()
    });
    let started = std::time::Instant::now();
    let (note, _) = backup(&format!(
        "[smtp]\nurl = \"smtp://127.0.0.1:{}\"\ntls = \"none\"\nfrom = \"b@example.com\"\n\
         timeout_seconds = 2\n",
        sink.port
    ));
    assert!(
        note.starts_with("failed: ") && note.contains("timed out"),
        "{note}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the CLI waited for the stalled server instead of timing out"
    );
}

#[test]
fn starttls_with_a_private_ca_and_login_sends_and_an_unknown_ca_is_refused() {
    let certs = certs();
    let sink = SmtpSink::start(SmtpOptions {
        starttls: true,
        require_starttls: true,
        auth: Some("mailer:s3cret-Mail-pw".into()),
        ..SmtpOptions::default()
    });
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let targets = sqlite_targets(&["app"]);
    let config = |extra: &str| {
        sandbox.config(&format!(
            "admins = [\"root@example.com\"]\n\n[smtp]\nurl = \"smtp://mailer@127.0.0.1:{}\"\n\
             tls = \"required\"\nfrom = \"backups@example.com\"\ntimeout_seconds = 5\n{extra}\n{targets}",
            sink.port
        ));
    };
    let backup = || {
        let mut cmd = sandbox.command(&["backup", "database", "--json"]);
        cmd.env("BACKUP__SMTP__PASSWORD", "s3cret-Mail-pw");
        let out: Run = cmd.output().expect("run").into();
        let out = out.success();
        out.json()[0]["notification"]
            .as_str()
            .expect("notification")
            .to_string()
    };

    // The server's certificate is signed by a CA only the ca_file knows.
    config("");
    let note = backup();
    assert!(
        note.starts_with("failed: ") && note.to_lowercase().contains("certificate"),
        "{note}"
    );
    assert!(sink.mails().is_empty());

    config(&format!("ca_file = \"{}\"\n", certs.ca.display()));
    assert_eq!(backup(), "sent");
    let mail = only_mail(&sink);
    assert_eq!(mail.meta["tls"], true, "STARTTLS was used");
    assert_eq!(mail.meta["login"], "mailer");
    assert_no_secret(&mail.raw, "s3cret-Mail-pw");

    // Implicit TLS (smtps://) with the same CA.
    let smtps = SmtpSink::start(SmtpOptions {
        implicit_tls: true,
        ..SmtpOptions::default()
    });
    sandbox.config(&format!(
        "admins = [\"root@example.com\"]\n\n[smtp]\nurl = \"smtps://127.0.0.1:{}\"\n\
         from = \"backups@example.com\"\nca_file = \"{}\"\n{targets}",
        smtps.port,
        certs.ca.display()
    ));
    let out = sandbox.cli(&["backup", "database", "--json"]).success();
    assert_eq!(out.json()[0]["notification"], "sent");
    assert_eq!(only_mail(&smtps).meta["tls"], true);
}

#[test]
fn webhooks_and_pings_follow_the_run_and_their_failures_change_nothing() {
    let http = HttpSink::start();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    sandbox.config(&format!(
        "environment = \"prod\"\n\n\
         [[webhooks]]\nurl = \"{}\"\non = [\"success\", \"failure\"]\n\n\
         [[webhooks]]\nurl = \"{}\"\nformat = \"slack\"\n\n\
         {}ping_url = \"{}\"\n",
        http.url("/hooks/json-token-123"),
        http.url("/hooks/slack-token-456"),
        sqlite_targets(&["app"]),
        http.url("/ping/db-uuid"),
    ));

    let out = sandbox.cli(&["backup", "database", "--json"]).success();
    let runs = out.json();
    let run = &runs[0];
    // Start before the end, then success; the failure-only Slack hook hears nothing.
    let paths: Vec<String> = http.requests().iter().map(|r| r.path.clone()).collect();
    let pings: Vec<&String> = paths.iter().filter(|p| p.starts_with("/ping")).collect();
    assert_eq!(pings, ["/ping/db-uuid/start", "/ping/db-uuid"], "{paths:?}");
    assert!(http.at("/ping").iter().all(|r| r.method == "GET"));
    assert!(http.at("/hooks/slack").is_empty(), "{paths:?}");
    let hooks = http.at("/hooks/json");
    assert_eq!(hooks.len(), 1, "{paths:?}");
    let hook = &hooks[0];
    assert_eq!(hook.method, "POST");
    assert_eq!(hook.header("content-type"), Some("application/json"));
    let body = hook.json();
    assert_eq!(body["event"], "success");
    assert_eq!(body["status"], "success");
    assert_eq!(body["environment"], "prod");
    assert_eq!(body["backup_type"], "database");
    assert_eq!(body["target"], "app");
    assert_eq!(body["run"]["id"], run["id"]);
    assert_eq!(body["run"]["sha256"], run["sha256"]);
    assert_eq!(body["run"]["artifact"], run["artifact"]);
    assert!(
        body["summary"]
            .as_str()
            .expect("summary")
            .starts_with("[Backup] Database Backup Successful - "),
        "{body}"
    );

    // A failure: every hook hears it (Slack as text), the ping says /fail;
    // endpoints answering 500 leave the run's outcome and exit code alone.
    let missing = unique("missing");
    sandbox.config(&format!(
        "[[webhooks]]\nurl = \"{}\"\non = [\"success\", \"failure\"]\n\n\
         [[webhooks]]\nurl = \"{}\"\nformat = \"slack\"\n\n\
         [database_backup]\ndatabases = [{{ name = \"shop\", url = \"{PG_URL}/{missing}\" }}]\n\
         ping_url = \"{}\"\n",
        http.url("/hooks/json-token-123"),
        http.url("/hooks/slack-token-456"),
        http.url("/ping/db-uuid"),
    ));
    let before = http.requests().len();
    http.respond_with(&[500, 500, 500, 500]);
    let out = sandbox.cli(&["backup", "database", "--json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let runs = out.json();
    let run = &runs[0];
    assert_eq!(run["status"], "failed");
    let new: Vec<HttpRequest> = http.requests().split_off(before);
    let paths: Vec<&str> = new.iter().map(|r| r.path.as_str()).collect();
    assert!(paths.contains(&"/ping/db-uuid/start"), "{paths:?}");
    assert!(paths.contains(&"/ping/db-uuid/fail"), "{paths:?}");
    assert!(!paths.contains(&"/ping/db-uuid"), "{paths:?}");
    let slack = new
        .iter()
        .find(|r| r.path.starts_with("/hooks/slack"))
        .expect("slack hook called");
    let text = slack.json()["text"].as_str().expect("text").to_string();
    assert!(
        text.starts_with(":rotating_light: *[Backup] Database Backup FAILED - "),
        "{text}"
    );
    assert!(
        text.contains(&format!("Backup Run ID: {}", run["id"])),
        "{text}"
    );
    let json = new
        .iter()
        .find(|r| r.path.starts_with("/hooks/json"))
        .expect("json hook called")
        .json();
    assert_eq!(json["event"], "failure");
    assert_eq!(json["error"], run["error_message"]);
    // Tokens in the URLs never reach the output or the logs.
    for token in ["json-token-123", "slack-token-456", "db-uuid"] {
        assert_no_secret(&out.all(), token);
    }
}

#[test]
fn notify_test_reports_the_smtp_dialogue_and_each_webhook() {
    let sink = SmtpSink::start(SmtpOptions::default());
    let http = HttpSink::start();
    let sandbox = Sandbox::new();
    sandbox.config(&format!(
        "notification_emails = [\"ops@example.com\"]\n\n{}\n\
         [[webhooks]]\nurl = \"{}\"\n",
        smtp(&sink, ""),
        http.url("/hooks/secret-path")
    ));
    let out = sandbox.cli(&["notify", "test"]).success();
    assert!(
        out.stdout.contains(&format!(
            "email: sent to ops@example.com through smtp://127.0.0.1:{} (no TLS)",
            sink.port
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("server replied: 250 2.0.0 OK: queued as test-0001"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "webhook http://127.0.0.1:{}/***: HTTP 200",
            http.port
        )),
        "{}",
        out.stdout
    );
    let mail = only_mail(&sink);
    assert!(mail.subject().starts_with("[Backup] Test notification - "));
    assert_eq!(http.at("/hooks/secret-path").len(), 1);

    // A server that is down: exit 1 and the reason.
    sandbox.config(&format!(
        "notification_emails = [\"ops@example.com\"]\n\n[smtp]\nurl = \"smtp://127.0.0.1:{}\"\n\
         from = \"b@example.com\"\n",
        closed_port()
    ));
    let out = sandbox.cli(&["notify", "test", "--email"]).failure();
    assert!(
        out.stdout.contains("email: FAILED: 127.0.0.1:")
            && out.stdout.contains("Connection refused"),
        "{}",
        out.stdout
    );
    // Nothing configured: a clear error.
    sandbox.config("");
    let out = sandbox.cli(&["notify", "test"]).failure();
    assert!(out.stderr.contains("nothing to test"), "{}", out.stderr);
}

#[test]
fn the_worker_sends_one_failure_mail_after_the_last_retry_and_retries_the_mail() {
    let ns = Namespace::new();
    // The first DATA gets a transient 451: the worker sends again.
    let sink = SmtpSink::start(SmtpOptions {
        refuse_first: 1,
        ..SmtpOptions::default()
    });
    let http = HttpSink::start();
    let sandbox = Sandbox::new();
    let url = format!("postgres://postgres@127.0.0.1:{}/app", closed_port());
    sandbox.config(&format!(
        "admins = [\"root@example.com\"]\n\n{}\n{}\n\
         [worker]\nheartbeat_seconds = 1\nshutdown_grace_seconds = 30\n\n\
         [retry]\nattempts = 3\nbackoff_seconds = 1\nmax_backoff_seconds = 1\n\
         notification_attempts = 3\nnotification_backoff_seconds = 1\n\n\
         [http]\nlisten = \"\"\n\n\
         [[webhooks]]\nurl = \"{}\"\n\n\
         [database_backup]\ndatabases = [\"{url}\"]\nping_url = \"{}\"\n",
        smtp(&sink, ""),
        ns.section(),
        http.url("/hook"),
        http.url("/ping"),
    ));
    let _worker = Worker::start(&sandbox, "a");
    ns.wait_for_worker("database");

    let out = sandbox.cli(&["trigger", "database", "--wait"]).failure();
    assert!(out.stdout.contains("app: failed (run "), "{}", out.stdout);
    let runs = runs_oldest_first(&sandbox);
    assert_eq!(runs.len(), 3, "{runs:#?}");
    // Retried attempts carry no notification; the last one was mailed.
    assert!(runs[0]["notification"].is_null() && runs[1]["notification"].is_null());
    assert_eq!(runs[2]["notification"], "sent", "{runs:#?}");
    let mail = only_mail(&sink);
    assert!(mail.body().contains("Attempts: 3\n"), "{}", mail.body());
    assert!(
        mail.body()
            .contains(&format!("Backup Run ID: {}\n", runs[2]["id"])),
        "{}",
        mail.body()
    );
    assert!(
        mail.body().contains("Connection refused"),
        "{}",
        mail.body()
    );
    // One webhook call, one /start per attempt and one /fail.
    let hooks = http.at("/hook");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].json()["run"]["id"], runs[2]["id"]);
    let pings: Vec<String> = http.at("/ping").iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        pings,
        ["/ping/start", "/ping/start", "/ping/start", "/ping/fail"]
    );
}

#[test]
fn nothing_sent_or_logged_carries_a_secret() {
    let mail_pw = "Mail-pw-7Qx";
    let db_pw = "Db-pw-4Kz";
    let sink = SmtpSink::start(SmtpOptions {
        auth: Some(format!("mailer:{mail_pw}")),
        auth_without_tls: true,
        ..SmtpOptions::default()
    });
    let http = HttpSink::start();
    let sandbox = Sandbox::new();
    let user = unique("u");
    // MariaDB refuses the password: its error text names the user and host.
    sandbox.config(&format!(
        "admins = [\"root@example.com\"]\n\n[smtp]\nurl = \"smtp://mailer:{mail_pw}@127.0.0.1:{}\"\n\
         tls = \"none\"\nfrom = \"b@example.com\"\n\n\
         [[webhooks]]\nurl = \"{}\"\nformat = \"slack\"\n\n\
         [database_backup]\ndatabases = [\"mariadb://{user}:{db_pw}@{MYSQL_HOST}:3306/nope\"]\n\
         ping_url = \"{}\"\n",
        sink.port,
        http.url("/hooks/Hook-token-9Zr"),
        http.url("/ping/Ping-uuid-1Ab"),
    ));
    let out = sandbox.cli(&["-vv", "backup", "database", "--json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let runs = out.json();
    let run = &runs[0];
    assert!(
        run["error_message"]
            .as_str()
            .expect("error")
            .contains("Access denied"),
        "{run}"
    );
    assert_eq!(run["notification"], "sent");
    let mail = only_mail(&sink);
    let sent: Vec<String> = http
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.path, r.body))
        .collect();
    let config_check = sandbox.cli(&["config", "check"]).all();
    for secret in [mail_pw, db_pw] {
        assert_no_secret(&mail.raw, secret);
        assert_no_secret(&sent.join("\n"), secret);
        assert_no_secret(&out.all(), secret);
        assert_no_secret(&config_check, secret);
    }
    for token in ["Hook-token-9Zr", "Ping-uuid-1Ab"] {
        assert_no_secret(&mail.raw, token);
        assert_no_secret(&out.all(), token);
        assert_no_secret(&config_check, token);
    }
}

//! Loading and validating configurations, as operators write them.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

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
    assert_eq!(s.storage.retention().last, 10);
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
            "are both named",
        ),
        (
            "[compression]\nalgorithm = \"zstd\"\nlevel = 40",
            "compression.level",
        ),
        ("admins = [\"not-an-address\"]", "not-an-address"),
        ("admins = [\"@localhost\"]", "@localhost"),
        (
            "[storage]\nurl = \"sftp://u:hunter2@host/srv\"",
            "sftp://[user@]host[:port]/absolute/path",
        ),
        (
            "[storage]\nurl = \"sftp://host/srv/../etc\"",
            "absolute/path",
        ),
        ("[storage]\nurl = \"azblob://Bad_Name/x\"", "lowercase"),
        (
            "[storage]\nurl = \"azblob://ok-name/../x\"",
            "must not climb",
        ),
        (
            "[storage]\nurl = \"s3://b\"\nssh_key = \"/k\"",
            "storage.ssh_key does not apply",
        ),
        (
            "[storage]\nurl = \"sftp://h/x\"\naccount_name = \"a\"",
            "storage.account_name does not apply",
        ),
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
    let e =
        smtp("url = \"smtp://mail:25\"\ntls = \"required\"\nusername = \"u\"\npassword = \"pw\"")
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
    let s = parse(
        "[[webhooks]]\nurl = \"https://h/x\"\nformat = \"slack\"\non = [\"success\", \"failure\"]",
    )
    .unwrap();
    assert_eq!(s.webhooks[0].format, WebhookFormat::Slack);
    assert_eq!(s.webhooks[0].on, [NotifyOn::Success, NotifyOn::Failure]);
    let s = parse("[[webhooks]]\nurl = \"https://h/x\"").unwrap();
    assert_eq!(s.webhooks[0].on, [NotifyOn::Failure]);
}

mod properties {
    use proptest::prelude::*;

    use super::parse;

    /// Every bounded number in the config, with its allowed range.
    const NUMBERS: &[(&str, &str, u64, u64)] = &[
        ("", "history_retention_days", 1, 36_500),
        ("storage", "keep", 1, 100_000),
        ("compression", "threads", 0, 256),
        ("retry", "attempts", 1, 100),
        ("retry", "backoff_seconds", 0, 86_400),
        ("retry", "max_backoff_seconds", 0, 604_800),
        ("retry", "notification_attempts", 1, 20),
        ("retry", "notification_backoff_seconds", 0, 3_600),
        ("worker", "shutdown_grace_seconds", 0, 86_400),
        ("worker", "catch_up_window_hours", 0, 8_784),
        ("worker", "heartbeat_seconds", 1, 3_600),
    ];

    fn toml_for(section: &str, key: &str, value: &str) -> String {
        if section.is_empty() {
            format!("{key} = {value}\n")
        } else {
            format!("[{section}]\n{key} = {value}\n")
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_text_loads_or_is_refused(text in ".{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn numbers_outside_their_range_are_refused_by_name(
            which in 0..NUMBERS.len(),
            value in prop_oneof![any::<i64>(), 0i64..100_000, Just(i64::MAX), Just(4_294_967_295)],
        ) {
            let (section, key, low, high) = NUMBERS[which];
            match parse(&toml_for(section, key, &value.to_string())) {
                Ok(settings) => {
                    let v = u64::try_from(value).unwrap();
                    prop_assert!((low..=high).contains(&v), "{key} = {value} was accepted");
                    // What the worker derives from them never overflows.
                    let _ = settings.worker.lost_after();
                    for attempt in [0, 1, 2, 64, u32::MAX] {
                        let _ = settings.retry.backoff(attempt);
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    prop_assert!(e.contains(key), "{e}");
                    let v = u64::try_from(value);
                    prop_assert!(v.map_or(true, |v| !(low..=high).contains(&v)), "{key} = {value}: {e}");
                }
            }
        }

        #[test]
        fn any_string_in_a_text_key_loads_or_is_refused(
            key in prop_oneof![
                Just(("", "timezone")),
                Just(("", "admins")),
                Just(("", "notification_emails")),
                Just(("storage", "url")),
                Just(("history", "url")),
                Just(("queue", "url")),
                Just(("smtp", "url")),
                Just(("smtp", "from")),
                Just(("database_backup", "schedule")),
                Just(("database_backup", "databases")),
                Just(("media_backup", "directories")),
            ],
            value in ".{0,60}",
        ) {
            let quoted = toml::Value::String(value).to_string();
            let list = matches!(key.1, "admins" | "notification_emails" | "databases" | "directories");
            let v = if list { format!("[{quoted}]") } else { quoted };
            let _ = parse(&toml_for(key.0, key.1, &v));
        }
    }
}

#[test]
fn remote_storage_urls_read_back_as_written() {
    for (text, shown) in [
        (
            "sftp://backup@nas.example:2222/srv/backups/",
            "sftp://backup@nas.example:2222/srv/backups",
        ),
        ("sftp://nas/srv/my%20backups", "sftp://nas/srv/my backups"),
        ("azblob://backups/prod/db", "azblob://backups/prod/db"),
        ("azblob://backups", "azblob://backups"),
        (
            "webdav://dav.example/backups/",
            "webdav://dav.example/backups",
        ),
        (
            "webdav+http://127.0.0.1:8080/",
            "webdav+http://127.0.0.1:8080/",
        ),
    ] {
        let s = parse(&format!("[storage]\nurl = \"{text}\"")).unwrap();
        assert_eq!(s.storage.url.to_string(), shown);
        assert!(s.storage.url.is_remote());
    }
    let err = parse("[storage]\nurl = \"sftp://u:hunter2@host/srv\"")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn no_error_shows_a_secret_however_it_is_mistyped() {
    let key = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS2YQJ7T";
    for (text, secret) in [
        (format!("[encryption]\nrecipients = \"{key}\""), key),
        (format!("[encryption]\nrecipients = [\"{key}\"]"), key),
        (
            "[encryption]\npassphrase = \"correct horse battery staple".to_string(),
            "correct horse",
        ),
        (
            "[encryption]\npassphrase = 123456789012345".to_string(),
            "123456789012345",
        ),
        (
            "[storage]\nurl = \"azblob://acct:SuperSecretKey==@backups/x\"".to_string(),
            "SuperSecretKey",
        ),
        (
            "[storage]\nurl = \"s3://AKIAX:SecretS3Key@bucket/p\"".to_string(),
            "SecretS3Key",
        ),
        (
            "[storage]\nurl = \"webdav+http://h:8080/dav?token=DavTokenSecret\"".to_string(),
            "DavTokenSecret",
        ),
        (
            "[storage]\nurl = \"s3://b\"\nsecret_access_key = 42424242".to_string(),
            "42424242",
        ),
    ] {
        let err = parse(&text).unwrap_err().to_string();
        assert!(!err.contains(secret), "{text:?} shows its secret: {err}");
    }
}

#[test]
fn storage_urls_that_could_smuggle_options_or_climb_are_refused() {
    for url in [
        "sftp://-oProxyCommand=touch${IFS}PWNED/srv",
        "sftp://host:0/srv",
        "webdav://host/a%2F..%2F..%2Fetc",
        "webdav://host/a/%2e%2e/b",
        "azblob://backups/%2e%2e/x",
    ] {
        assert!(
            parse(&format!("[storage]\nurl = \"{url}\"")).is_err(),
            "{url} was accepted"
        );
    }
}

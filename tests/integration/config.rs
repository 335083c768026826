//! `config check` / `config example` and load-time validation, as a user sees them.

use std::fs;

use crate::support::*;

#[test]
fn check_prints_the_effective_config_with_every_secret_masked() {
    let sandbox = Sandbox::new();
    sandbox.raw_config(
        r#"
environment = "prod"
[history]
url = "postgres://hist:HistPw1@db/history"
[storage]
url = "s3://bucket/prefix"
access_key_id = "AKIAEXAMPLE"
secret_access_key = "S3Secret1"
[smtp]
url = "smtp://mailer:MailPw1@mail:587"
from = "backups@example.com"
[queue]
url = "redis://:RedisPw1@127.0.0.1:6379"
[database_backup]
databases = ["postgres://app:DbPw1@db/app"]
"#,
    );
    let out = sandbox
        .command(&["config", "check"])
        .env("BACKUP__STORAGE__KEEP", "7")
        .output()
        .expect("run");
    let out = Run::from(out).success();
    for secret in ["HistPw1", "S3Secret1", "MailPw1", "RedisPw1", "DbPw1"] {
        assert_no_secret(&out.all(), secret);
    }
    assert!(
        out.stdout.contains("postgres://app:***@db/app"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("secret_access_key = \"***\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("keep = 7"),
        "environment overrides the file:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("configuration OK"), "{}", out.stderr);
}

#[test]
fn invalid_configs_are_refused_with_the_key_named() {
    let cases = [
        ("[database_backup]\nschedul = \"0 2 * * *\"", "schedul"),
        ("[database_backup]\nschedule = \"61 2 * * *\"", "61 2 * * *"),
        ("timezone = \"Europe/Atlantis\"", "Europe/Atlantis"),
        ("[storage]\nkeep = 0", "storage.keep"),
    ];
    for (text, needle) in cases {
        let sandbox = Sandbox::new();
        sandbox.raw_config(text);
        let out = sandbox.cli(&["config", "check"]).failure();
        assert!(out.stderr.contains(needle), "{text:?}:\n{}", out.stderr);
        assert!(out.stdout.is_empty());
        // Any other command refuses the same config before doing anything.
        let out = sandbox.cli(&["backup", "database"]).failure();
        assert!(out.stderr.contains(needle));
        assert!(
            !sandbox.path().join("backups-history.db").exists(),
            "nothing was created"
        );
    }
    let sandbox = Sandbox::new();
    let out = sandbox.cli(&["config", "check"]).failure();
    assert!(
        out.stderr.contains("backup.toml not found"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_printed_example_is_a_valid_config() {
    let sandbox = Sandbox::new();
    let example = sandbox.cli(&["config", "example"]).success().stdout;
    assert!(
        example.lines().filter(|l| l.starts_with('#')).count() > 20,
        "the example is commented"
    );
    fs::write(sandbox.path().join("backup.toml"), example).expect("write");
    sandbox.cli(&["config", "check"]).success();
}

#[test]
fn check_says_what_retention_keeps_when_keep_is_unset() {
    let sandbox = Sandbox::new();
    let cases = [
        (
            "",
            "retention: keeps the newest 10 artifacts of each target (storage.keep unset)",
        ),
        (
            "keep = 3\n",
            "retention: keeps the newest 3 artifacts of each target",
        ),
        (
            "keep_daily = 7\nkeep_monthly = 12\n",
            "retention: keeps the newest 1 artifact, one a day for 7 days and one a month \
             for 12 months of each target (storage.keep unset)",
        ),
    ];
    for (keys, said) in cases {
        sandbox.raw_config(&format!(
            "[history]\nurl = \"sqlite://history.db\"\n\n[storage]\nurl = \"file://storage\"\n{keys}"
        ));
        let out = sandbox.cli(&["config", "check"]).success();
        assert!(
            out.stderr.lines().any(|l| l == said),
            "{keys:?}: expected {said:?} in\n{}",
            out.stderr
        );
    }
    // BACKUP__STORAGE__KEEP overrides the file, and the line follows it.
    let out = sandbox
        .command(&["config", "check"])
        .env("BACKUP__STORAGE__KEEP", "5")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("keeps the newest 5 artifacts, one a day for 7 days"),
        "{stderr}"
    );
}

#[test]
fn environment_values_for_string_keys_are_taken_as_written() {
    let sandbox = Sandbox::new();
    sandbox.raw_config("[storage]\nkeep = 3\n");
    let check = |vars: &[(&str, &str)]| {
        let mut cmd = sandbox.command(&["config", "check"]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run"))
    };
    let out = check(&[
        ("BACKUP__EMAIL_SUBJECT_PREFIX", "[Backup]"),
        ("BACKUP__ENVIRONMENT", "123"),
        ("BACKUP__SMTP__URL", "smtp://mail.example.com"),
        ("BACKUP__SMTP__FROM", "Backups <backups@example.com>"),
        // Lists, numbers and booleans keep TOML syntax.
        ("BACKUP__ADMINS", "[\"ops@example.com\"]"),
        ("BACKUP__STORAGE__KEEP", "14"),
        ("BACKUP__ENABLED", "false"),
    ])
    .success();
    for line in [
        "email_subject_prefix = \"[Backup]\"",
        "environment = \"123\"",
        "from = \"Backups <backups@example.com>\"",
        "admins = [\"ops@example.com\"]",
        "keep = 14",
        "enabled = false",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    let out = check(&[("BACKUP__ENVIRONMENT", "true")]).success();
    assert!(
        out.stdout.contains("environment = \"true\""),
        "{}",
        out.stdout
    );
    // A number key still wants a number, and says which variable is wrong.
    let out = check(&[("BACKUP__STORAGE__KEEP", "many")]).failure();
    assert!(
        out.stderr.contains("BACKUP__STORAGE__KEEP"),
        "{}",
        out.stderr
    );
}

#[test]
fn media_folders_with_spaces_get_a_name_and_only_real_collisions_are_refused() {
    let sandbox = Sandbox::new();
    for dir in ["my media", "other/my-media"] {
        fs::create_dir_all(sandbox.path().join(dir)).expect("dir");
    }
    fs::write(sandbox.path().join("my media/a.txt"), "a").expect("file");
    sandbox.config("[media_backup]\npaths = [\"my media\"]\n");
    let out = sandbox.cli(&["backup", "media", "--json"]).success();
    assert_eq!(out.json()[0]["target"], "my-media", "{}", out.stdout);

    sandbox.config("[media_backup]\npaths = [\"my media\", \"other/my-media\"]\n");
    let out = sandbox.cli(&["config", "check"]).failure();
    for needle in ["my media", "other/my-media", "both named \"my-media\""] {
        assert!(out.stderr.contains(needle), "{needle:?}: {}", out.stderr);
    }
    // Errors name keys as they are written, without figment's profile.
    sandbox.config("[media_backup]\npaths = [\"\"]\n");
    let out = sandbox.cli(&["config", "check"]).failure();
    assert!(out.stderr.contains("media_backup.paths"), "{}", out.stderr);
    assert!(!out.stderr.contains("default."), "{}", out.stderr);
}

#[test]
fn a_cron_that_never_fires_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.config("[database_backup]\nschedule = \"0 0 31 2 *\"\n");
    let out = sandbox.cli(&["config", "check"]).failure();
    assert!(out.stderr.contains("never fires"), "{}", out.stderr);
    let out = sandbox.cli(&["schedules", "next", "0 0 31 2 *"]).failure();
    assert!(out.stderr.contains("never fires"), "{}", out.stderr);
}

#[test]
fn without_a_backup_toml_defaults_and_environment_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(cli_path());
        cmd.args(args)
            .current_dir(dir.path())
            .env_remove("BACKUP_CONFIG")
            .env("BACKUP__TIMEZONE", "Europe/Rome");
        Run::from(cmd.output().expect("run backup-cli"))
    };
    let out = run(&[
        "schedules",
        "next",
        "0 2 * * *",
        "--after",
        "2026-11-26T00:00:00Z",
        "--count",
        "1",
    ])
    .success();
    assert!(
        out.stdout.contains("2026-11-26 02:00:00 CET"),
        "{}",
        out.stdout
    );
    let out = run(&["config", "check"]).success();
    assert!(
        out.stdout.contains("timezone = \"Europe/Rome\""),
        "{}",
        out.stdout
    );
    // A file that was named and is missing stays an error.
    run(&["--config", "nope.toml", "config", "check"]).failure();
}

#[test]
fn out_of_range_numbers_and_values_that_fail_later_are_refused_at_load() {
    let cases = [
        (
            "history_retention_days = 4294967295",
            "history_retention_days = 4294967295 is out of range; allowed: 1..=36500",
        ),
        (
            "[worker]\ncatch_up_window_hours = 3000000000000",
            "worker.catch_up_window_hours",
        ),
        (
            "[worker]\nheartbeat_seconds = 9223372036854775807",
            "worker.heartbeat_seconds",
        ),
        (
            "[retry]\nattempts = 1000",
            "retry.attempts = 1000 is out of range; allowed: 1..=100",
        ),
        ("[storage]\nkeep = 4000000000", "storage.keep"),
        (
            "notification_emails = [\"b@example.com,c@example.com\"]",
            "several addresses",
        ),
        ("[queue]\nurl = \"\"", "queue.url"),
        ("[queue]\nurl = \"http://127.0.0.1:6379\"", "queue.url"),
    ];
    for (text, needle) in cases {
        let sandbox = Sandbox::new();
        sandbox.raw_config(text);
        let out = sandbox.cli(&["config", "check"]).failure();
        assert_ne!(out.code, 101, "{text:?} crashed:\n{}", out.all());
        assert!(out.stderr.contains(needle), "{text:?}:\n{}", out.stderr);
    }
}

#[test]
fn passwords_with_reserved_characters_are_refused_and_never_echoed() {
    let cases = [
        (
            "[database_backup]\ndatabases = [\"postgres://u:p@ss:w/\\\"rd 1%?#X@host/db\"]",
            "ss:w",
        ),
        (
            "[queue]\nurl = \"redis://:r/dXsecret@127.0.0.1/0\"",
            "dXsecret",
        ),
        (
            "[history]\nurl = \"postgres://hist:Pa/ss?wd@db/history\"",
            "ss?wd",
        ),
        (
            "[smtp]\nurl = \"smtp://mailer:Ma#ilPw@mail:587\"\nfrom = \"b@example.com\"",
            "ilPw",
        ),
    ];
    for (text, secret) in cases {
        let sandbox = Sandbox::new();
        sandbox.raw_config(text);
        let out = sandbox.cli(&["config", "check"]).failure();
        assert!(
            out.stderr.contains("percent-encode"),
            "{text:?}:\n{}",
            out.all()
        );
        assert_no_secret(&out.all(), secret);
    }
}

#[test]
fn out_of_range_arguments_are_errors_not_panics() {
    let sandbox = Sandbox::new();
    sandbox.config("");
    for args in [
        &["runs", "list", "--since", "9999999999999m"][..],
        &["runs", "list", "--since", "153722867280912930h"],
        &["runs", "list", "--until", "99999999999999999999999999w"],
        &["runs", "list", "--limit", "0"],
        &["runs", "cleanup", "--older-than-days", "106751991"],
        &["restore", "list", "--limit", "-1"],
    ] {
        let out = sandbox.cli(args).failure();
        assert_ne!(out.code, 101, "{args:?} panicked:\n{}", out.all());
        assert!(!out.stderr.contains("panicked"), "{args:?}:\n{}", out.all());
        assert!(out.stderr.contains("error"), "{args:?}:\n{}", out.all());
    }
}

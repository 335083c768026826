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

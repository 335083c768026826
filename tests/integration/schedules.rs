//! `schedules setup|remove|list|next`: reconciling stored schedules with the
//! config, with dry runs that change nothing.

use crate::support::*;

const BOTH: &str = "timezone = \"Europe/Rome\"\n\n\
    [database_backup]\nschedule = \"0 2 * * *\"\ndatabases = [\"sqlite://app.db\", \"sqlite://crm.db\"]\n\n\
    [media_backup]\nenabled = true\nschedule = \"0 3 * * 0\"\npaths = [\"media\"]\n";

/// The stored schedules, as `schedules list --json` prints them.
fn stored(sandbox: &Sandbox) -> Vec<serde_json::Value> {
    let listed = sandbox
        .cli(&["schedules", "list", "--json"])
        .success()
        .json();
    listed.as_array().expect("array").clone()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn setup_dry_run_prints_the_plan_and_writes_nothing() {
    let sandbox = Sandbox::new();
    sandbox.config(BOTH);
    let out = sandbox.cli(&["schedules", "setup", "--dry-run"]).success();
    let printed = lines(&out.stdout);
    assert_eq!(printed.len(), 3, "{}", out.stdout);
    assert!(
        printed[0].starts_with(
            "[DRY RUN] would create database (database: app, crm) \"0 2 * * *\" Europe/Rome; next: "
        ),
        "{}",
        printed[0]
    );
    // Three fire times in the schedule's zone.
    assert_eq!(
        printed[0].matches(" 02:00:00 CE").count(),
        3,
        "{}",
        printed[0]
    );
    assert!(
        printed[1].starts_with(
            "[DRY RUN] would create media (media: media) \"0 3 * * 0\" Europe/Rome; next: "
        ),
        "{}",
        printed[1]
    );
    assert_eq!(
        printed[2],
        "[DRY RUN] 2 created, 0 updated, 0 deleted, 0 unchanged (nothing written)"
    );
    assert!(
        !sandbox.path().join("history.db").exists(),
        "a dry run created the history database"
    );
}

#[test]
fn setup_creates_updates_deletes_and_leaves_alone() {
    let sandbox = Sandbox::new();
    sandbox.config(BOTH);
    let out = sandbox.cli(&["schedules", "setup"]).success();
    assert!(
        out.stdout
            .starts_with("created database (database: app, crm)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("2 created, 0 updated, 0 deleted, 0 unchanged\n"),
        "{}",
        out.stdout
    );

    let out = sandbox.cli(&["schedules", "setup"]).success();
    assert!(
        out.stdout.starts_with("unchanged database"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("0 created, 0 updated, 0 deleted, 2 unchanged\n"),
        "{}",
        out.stdout
    );

    // A new cron for databases, media switched off.
    sandbox.config(
        &BOTH
            .replace("0 2 * * *", "30 1 * * 1-5")
            .replace("enabled = true", "enabled = false"),
    );
    let dry = sandbox.cli(&["schedules", "setup", "--dry-run"]).success();
    assert_eq!(
        lines(&dry.stdout)
            .iter()
            .map(|l| l.split(" (").next().unwrap_or(""))
            .collect::<Vec<_>>(),
        [
            "[DRY RUN] would update database",
            "[DRY RUN] would delete media",
            "[DRY RUN] 0 created, 1 updated, 1 deleted, 0 unchanged"
        ]
    );
    let listed = sandbox
        .cli(&["schedules", "list", "--json"])
        .success()
        .json();
    assert_eq!(
        listed.as_array().expect("array").len(),
        2,
        "the dry run changed the store"
    );
    assert_eq!(listed[0]["cron"], "0 2 * * *");

    let out = sandbox.cli(&["schedules", "setup"]).success();
    assert!(
        out.stdout
            .contains("updated database (database: app, crm) \"30 1 * * 1-5\" Europe/Rome; next: "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("deleted media (media: media) \"0 3 * * 0\" Europe/Rome\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .ends_with("0 created, 1 updated, 1 deleted, 0 unchanged\n"),
        "{}",
        out.stdout
    );

    let listed = sandbox
        .cli(&["schedules", "list", "--json"])
        .success()
        .json();
    let only = only(listed.as_array().expect("array"));
    assert_eq!(only["name"], "database");
    assert_eq!(only["cron"], "30 1 * * 1-5");
    assert_eq!(only["timezone"], "Europe/Rome");
    assert_eq!(only["targets"], serde_json::json!(["app", "crm"]));
    assert!(only["next_fire"].is_string());
    assert!(only["last_run"].is_null());
    // The next fire is a weekday at 01:30 in Rome.
    let next: chrono::DateTime<chrono::Utc> = only["next_fire"]
        .as_str()
        .expect("next")
        .parse()
        .expect("time");
    let local = next.with_timezone(&chrono_tz::Europe::Rome);
    assert_eq!(local.format("%H:%M").to_string(), "01:30");
    assert!(!matches!(
        chrono::Datelike::weekday(&local),
        chrono::Weekday::Sat | chrono::Weekday::Sun
    ));

    let table = sandbox.cli(&["schedules", "list"]).success();
    assert!(table.stdout.contains("30 1 * * 1-5"), "{}", table.stdout);
}

#[test]
fn remove_dry_run_lists_and_remove_deletes() {
    let sandbox = Sandbox::new();
    sandbox.config(BOTH);
    sandbox.cli(&["schedules", "setup"]).success();
    let dry = sandbox.cli(&["schedules", "remove", "--dry-run"]).success();
    assert_eq!(
        lines(&dry.stdout),
        [
            "[DRY RUN] would delete database (database: app, crm) \"0 2 * * *\" Europe/Rome",
            "[DRY RUN] would delete media (media: media) \"0 3 * * 0\" Europe/Rome",
            "[DRY RUN] 0 created, 0 updated, 2 deleted, 0 unchanged (nothing written)",
        ]
    );
    assert_eq!(stored(&sandbox).len(), 2);
    let out = sandbox.cli(&["schedules", "remove"]).success();
    assert!(
        out.stdout
            .ends_with("0 created, 0 updated, 2 deleted, 0 unchanged\n"),
        "{}",
        out.stdout
    );
    assert_eq!(
        sandbox
            .cli(&["schedules", "list", "--json"])
            .success()
            .json(),
        serde_json::json!([])
    );
    let again = sandbox.cli(&["schedules", "remove"]).success();
    assert_eq!(again.stdout, "no schedules are stored; nothing to remove\n");
}

#[test]
fn setup_refuses_when_backups_are_switched_off_and_changes_nothing() {
    let sandbox = Sandbox::new();
    sandbox.config(BOTH);
    sandbox.cli(&["schedules", "setup"]).success();
    sandbox.config(&format!("enabled = false\n{BOTH}"));
    let out = sandbox.cli(&["schedules", "setup"]).failure();
    assert!(out.stderr.contains("enabled = false"), "{}", out.stderr);
    assert!(
        out.stderr.contains("backup-cli schedules remove"),
        "{}",
        out.stderr
    );
    assert_eq!(stored(&sandbox).len(), 2);
}

#[test]
fn next_previews_fire_times_with_standard_semantics() {
    let sandbox = Sandbox::new();
    sandbox.config("");
    let out = sandbox
        .cli(&[
            "schedules",
            "next",
            "0 2 * * 1-5",
            "--timezone",
            "America/New_York",
            "--after",
            "2026-11-26T12:00:00Z",
            "--count",
            "3",
            "--json",
        ])
        .success();
    assert_eq!(
        out.json(),
        serde_json::json!([
            "2026-11-27T02:00:00-05:00",
            "2026-11-30T02:00:00-05:00",
            "2026-12-01T02:00:00-05:00"
        ])
    );
    // Spring forward in Rome: 02:30 does not exist and fires at 03:00, once.
    let out = sandbox
        .cli(&[
            "schedules",
            "next",
            "30 2 * * *",
            "--timezone",
            "Europe/Rome",
            "--after",
            "2026-03-28T12:00:00Z",
            "--count",
            "2",
            "--json",
        ])
        .success();
    assert_eq!(
        out.json(),
        serde_json::json!(["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"])
    );
    let text = sandbox
        .cli(&[
            "schedules",
            "next",
            "@daily",
            "--after",
            "2026-11-26T12:00:00Z",
            "--count",
            "1",
        ])
        .success();
    assert_eq!(
        text.stdout,
        "2026-11-27 00:00:00 UTC  (2026-11-27T00:00:00+00:00)\n"
    );

    let bad = sandbox.cli(&["schedules", "next", "0 25 * * *"]).failure();
    assert!(
        bad.stderr
            .contains("invalid cron expression \"0 25 * * *\""),
        "{}",
        bad.stderr
    );
    let bad = sandbox
        .cli(&["schedules", "next", "@daily", "--timezone", "Mars/Base"])
        .failure();
    assert!(
        bad.stderr.contains("unknown timezone \"Mars/Base\""),
        "{}",
        bad.stderr
    );
}

//! Run history through the CLI: filters, show, cleanup with dry-run.

use std::fs;

use crate::support::*;

fn sandbox_with_runs() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.sample_db("a.sqlite3");
    sandbox.sample_db("b.sqlite3");
    sandbox.config(
        "[database_backup]\ndatabases = [\"sqlite://a.sqlite3\", \"sqlite://b.sqlite3\", \"sqlite://Missing-C.sqlite3\"]",
    );
    sandbox.cli(&["backup", "database"]).failure();
    sandbox
}

fn ids(out: &Run) -> Vec<i64> {
    out.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

#[test]
fn runs_list_filters_and_show() {
    let sandbox = sandbox_with_runs();
    let list = |args: &[&str]| {
        let mut all = vec!["runs", "list", "--json"];
        all.extend_from_slice(args);
        ids(&sandbox.cli(&all).success())
    };
    assert_eq!(list(&[]), [3, 2, 1]);
    assert_eq!(list(&["--status", "failed"]), [3]);
    assert_eq!(list(&["--status", "success"]), [2, 1]);
    assert_eq!(list(&["--type", "media"]), Vec::<i64>::new());
    assert_eq!(list(&["--target", "b"]), [2]);
    assert_eq!(
        list(&["--search", "DOES NOT EXIST"]),
        [3],
        "search is case-insensitive"
    );
    assert_eq!(
        list(&["--search", "100%_"]),
        Vec::<i64>::new(),
        "LIKE wildcards are literal"
    );
    assert_eq!(list(&["--limit", "1"]), [3]);
    assert_eq!(list(&["--since", "1d"]), [3, 2, 1]);
    assert_eq!(list(&["--since", "2999-01-01"]), Vec::<i64>::new());

    let bad = sandbox.cli(&["runs", "list", "--status", "done"]).failure();
    assert!(
        bad.stderr
            .contains("expected one of: running, success, failed"),
        "{}",
        bad.stderr
    );
    let bad = sandbox
        .cli(&["runs", "list", "--since", "yesterday"])
        .failure();
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);

    let table = sandbox.cli(&["runs", "list"]).success().stdout;
    assert!(
        table.contains("STATUS") && table.contains("failed") && table.contains("success"),
        "{table}"
    );
    assert!(
        !table.contains('\u{1b}'),
        "no colour codes when not a terminal"
    );

    let shown = sandbox
        .cli(&["runs", "show", "3", "--json"])
        .success()
        .json();
    assert_eq!(shown["target"], "Missing-C");
    assert_eq!(shown["status"], "failed");
    let human = sandbox.cli(&["runs", "show", "3"]).success().stdout;
    assert!(
        human.contains("error_message") && human.contains("does not exist"),
        "{human}"
    );
    let missing = sandbox.cli(&["runs", "show", "99"]).failure();
    assert!(
        missing.stderr.contains("no backup run with id 99"),
        "{}",
        missing.stderr
    );
}

#[test]
fn cleanup_dry_run_changes_nothing_and_the_real_run_deletes_only_old_rows() {
    let sandbox = sandbox_with_runs();
    sh(&format!(
        "sqlite3 '{}' \"UPDATE backup_runs SET started_at = '2020-01-01T00:00:00+00:00' WHERE id = 1\"",
        sandbox.path().join("history.db").display()
    ));
    let dry = sandbox
        .cli(&["runs", "cleanup", "--dry-run"])
        .success()
        .stdout;
    assert!(dry.contains("[DRY RUN] would delete run 1 "), "{dry}");
    assert!(dry.contains("[DRY RUN] 1 run(s) started before"), "{dry}");
    assert_eq!(sandbox.runs().len(), 3, "dry run deletes nothing");

    let real = sandbox.cli(&["runs", "cleanup"]).success().stdout;
    assert!(
        real.contains("1 run(s) started before") && real.contains("(90 days) deleted"),
        "{real}"
    );
    let left: Vec<i64> = sandbox
        .runs()
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(left, [3, 2]);

    let none = sandbox
        .cli(&["runs", "cleanup", "--older-than-days", "1"])
        .success()
        .stdout;
    assert!(none.contains("0 run(s)"), "{none}");
    sandbox
        .cli(&["runs", "cleanup", "--older-than-days", "0"])
        .failure();
}

#[test]
fn a_terminal_gets_coloured_badges_and_a_progress_line_unless_no_color() {
    let sandbox = sandbox_with_runs();
    let coloured = sandbox
        .cli_on_tty(&["runs", "list"], false)
        .success()
        .stdout;
    assert!(
        coloured.contains("\u{1b}[38;5;10m success"),
        "green success badge:\n{coloured:?}"
    );
    assert!(
        coloured.contains("\u{1b}[38;5;9m failed"),
        "red failed badge:\n{coloured:?}"
    );
    let plain = sandbox.cli_on_tty(&["runs", "list"], true).success().stdout;
    assert!(
        plain.contains("failed") && !plain.contains('\u{1b}'),
        "NO_COLOR:\n{plain:?}"
    );

    let backup = sandbox
        .cli_on_tty(&["backup", "database", "--target", "a"], false)
        .success()
        .stdout;
    assert!(
        backup.contains("database a: ") && backup.contains(" read ("),
        "progress line:\n{backup:?}"
    );
    assert!(backup.contains("database a: success"), "{backup:?}");
}

#[test]
fn runs_list_reads_filters_as_people_type_them_and_never_writes() {
    let sandbox = sandbox_with_runs();
    let list = |args: &[&str]| {
        let mut all = vec!["runs", "list", "--json"];
        all.extend_from_slice(args);
        ids(&sandbox.cli(&all).success())
    };
    assert_eq!(list(&["--status", "FAILED"]), [3]);
    assert_eq!(list(&["--type", "Database", "--status", "Success"]), [2, 1]);
    assert_eq!(list(&["--until", "2000-01-01"]), Vec::<i64>::new());
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(
        list(&["--until", &today]),
        [3, 2, 1],
        "a date includes its day"
    );
    assert_eq!(list(&["--since", "1d", "--until", "1d"]), Vec::<i64>::new());

    // The table cuts long errors; --wide shows them whole.
    let error = sandbox
        .cli(&["runs", "show", "3", "--json"])
        .success()
        .json()["error_message"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(error.chars().count() > 60, "{error}");
    let table = sandbox.cli(&["runs", "list"]).success().stdout;
    assert!(!table.contains(&error), "{table}");
    let wide = sandbox.cli(&["runs", "list", "--wide"]).success().stdout;
    assert!(wide.contains(&error), "{wide}");

    // Reading migrates and writes nothing: an older schema stays as it is.
    let db = sandbox.path().join("history.db");
    // The whole database in its main file (no WAL frames aside), so that
    // putting these bytes back below restores exactly this state.
    sh(&format!(
        "sqlite3 '{}' 'PRAGMA wal_checkpoint(TRUNCATE)'",
        db.display()
    ));
    let current = fs::read(&db).expect("read");
    sh(&format!(
        "sqlite3 '{}' \"DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)\"",
        db.display()
    ));
    let before = fs::read(&db).expect("read");
    let out = sandbox.cli(&["runs", "list"]).failure();
    assert!(out.stderr.contains("backup-cli migrate"), "{}", out.stderr);
    assert_eq!(
        fs::read(&db).expect("read"),
        before,
        "runs list changed the history"
    );
    // Frames a WAL may still hold belong to the file being replaced.
    for side in ["history.db-wal", "history.db-shm"] {
        let _ = fs::remove_file(sandbox.path().join(side));
    }
    fs::write(&db, current).expect("put the current schema back");
    assert_eq!(list(&[]), [3, 2, 1]);

    // No history yet: nothing to list, and nothing created.
    let empty = Sandbox::new();
    empty.config("");
    let out = empty.cli(&["runs", "list", "--json"]).success();
    assert_eq!(out.json(), serde_json::json!([]));
    assert!(
        !empty.path().join("history.db").exists(),
        "runs list created the history"
    );
}

#[test]
fn runs_show_tells_verification_notification_and_a_pruned_artifact() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    sandbox.raw_config(
        "[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"file://storage\"\nkeep = 1\n\
         [database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]",
    );
    sandbox.cli(&["backup", "database"]).success();
    sandbox.cli(&["backup", "database"]).success();
    sandbox.cli(&["verify", "--latest"]).success();

    let pruned = sandbox.cli(&["runs", "show", "1"]).success().stdout;
    assert!(
        pruned.contains("(no longer in storage: deleted by retention or by hand)"),
        "{pruned}"
    );
    let kept = sandbox.cli(&["runs", "show", "2"]).success().stdout;
    for line in ["verify_result    ok", "notification     skipped"] {
        assert!(kept.contains(line), "no {line:?} in:\n{kept}");
    }
    assert!(kept.contains("verified_at      20"), "{kept}");
    assert!(!kept.contains("no longer in storage"), "{kept}");
}

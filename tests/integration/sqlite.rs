//! SQLite backups: a consistent online copy, restorable with `sqlite3`.

use crate::support::*;

#[test]
fn backup_of_a_live_wal_database_is_a_consistent_restorable_copy() {
    let sandbox = Sandbox::new();
    let db = sandbox.path().join("app.sqlite3");
    sh(&format!(
        "sqlite3 '{}' \"PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, blob BLOB);
           INSERT INTO notes (body, blob) VALUES ('Zoë 🚀', x'00ff10'), ('李雷', NULL);
           WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
           INSERT INTO notes (body) SELECT 'row ' || i FROM n;\"",
        db.display()
    ));
    sandbox.config("[database_backup]\ndatabases = [\"sqlite://app.sqlite3\"]");
    let tmp = sandbox.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let out = sandbox
        .command(&["backup", "database", "--json"])
        .env("TMPDIR", &tmp)
        .output()
        .expect("run");
    let runs = Run::from(out).success().json();
    let run = only(runs.as_array().expect("array"));
    let key = run["artifact"].as_str().expect("key");
    assert!(
        key.starts_with("database/app/app-") && key.ends_with(".sqlite3.zst"),
        "{key}"
    );

    let restored = sandbox.path().join("restored.sqlite3");
    sh(&format!(
        "zstd -dc '{}' > '{}'",
        sandbox.storage().join(key).display(),
        restored.display()
    ));
    assert_eq!(
        sh(&format!(
            "sqlite3 '{}' 'PRAGMA integrity_check'",
            restored.display()
        ))
        .trim(),
        "ok"
    );
    let dump = |p: &std::path::Path| sh(&format!("sqlite3 '{}' .dump", p.display()));
    assert_eq!(dump(&restored), dump(&db));
    // The one staging copy was made in TMPDIR and is gone.
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp").count(), 0);
}

#[test]
fn a_missing_sqlite_file_fails_the_run_clearly() {
    let sandbox = Sandbox::new();
    sandbox.config("[database_backup]\ndatabases = [\"sqlite:///nonexistent/dir/app.db\"]");
    let out = sandbox.cli(&["backup", "database"]).failure();
    assert!(
        out.stderr
            .contains("SQLite database /nonexistent/dir/app.db does not exist"),
        "{}",
        out.stderr
    );
    assert_eq!(only(&sandbox.runs())["status"], "failed");
    assert!(sandbox.stored_files().is_empty());
}

//! Storage: a real S3-protocol server, unwritable storage, retention, listing.

use std::{fs, path::Path};

use crate::support::*;

#[test]
fn s3_storage_receives_complete_artifacts_and_lists_them() {
    let s3 = s3();
    let bucket = s3.bucket();
    let sandbox = Sandbox::new();
    sandbox.raw_config(&format!(
        "[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"s3://{bucket}/nightly/app\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\n[database_backup]\ndatabases = [\"sqlite://{}\"]",
        s3.endpoint,
        sample_db().display()
    ));
    // The secret comes from the environment, as an operator would pass it.
    let out = sandbox
        .command(&["backup", "database", "--json"])
        .env("BACKUP__STORAGE__SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .output()
        .expect("run");
    let out = Run::from(out).success();
    assert_no_secret(&out.all(), S3_SECRET_KEY);
    let runs = out.json();
    let run = only(runs.as_array().expect("array"));
    let key = run["artifact"].as_str().expect("key");
    let object = s3.root.join(&bucket).join("nightly/app").join(key);
    assert!(object.is_file(), "{} missing", object.display());
    assert_eq!(sha256_file(&object), run["sha256"].as_str().expect("sha"));
    assert!(Path::new(&format!("{}.manifest.json", object.display())).is_file());
    let restored = sandbox.path().join("r.sqlite3");
    sh(&format!(
        "zstd -dc '{}' > '{}'",
        object.display(),
        restored.display()
    ));
    assert_eq!(
        sh(&format!(
            "sqlite3 '{}' 'SELECT name FROM customers WHERE id = 3'",
            restored.display()
        ))
        .trim(),
        "李雷"
    );

    let listed = sandbox
        .command(&["artifacts", "list", "--json"])
        .env("BACKUP__STORAGE__SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .output()
        .expect("run");
    let listed = Run::from(listed).success().json();
    let manifest = only(listed.as_array().expect("array"));
    assert_eq!(manifest["artifact"], key);
    assert_eq!(manifest["sha256"], run["sha256"]);

    // A wrong secret is refused by the server: a failed run, and the secret stays out of sight.
    let wrong = "definitely-not-the-secret";
    let out = sandbox
        .command(&["backup", "database"])
        .env("BACKUP__STORAGE__SECRET_ACCESS_KEY", wrong)
        .output()
        .expect("run");
    let out = Run::from(out).failure();
    assert_no_secret(&out.all(), wrong);
    let runs = sandbox.runs();
    assert_eq!(runs[0]["status"], "failed");
    assert!(
        runs[0]["error_message"]
            .as_str()
            .expect("msg")
            .contains("storage write"),
        "{}",
        runs[0]
    );
    assert_no_secret(&runs[0].to_string(), wrong);
}

#[test]
fn unwritable_storage_fails_the_run_and_records_why() {
    let sandbox = Sandbox::new();
    fs::write(sandbox.path().join("not-a-dir"), "x").expect("write");
    sandbox.raw_config(&format!(
        "[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"file://not-a-dir/backups\"\n[database_backup]\ndatabases = [\"sqlite://{}\"]",
        sample_db().display()
    ));
    let out = sandbox.cli(&["backup", "database"]).failure();
    let runs = sandbox.runs();
    let run = only(&runs);
    assert_eq!(run["status"], "failed");
    let msg = run["error_message"].as_str().expect("msg");
    assert!(
        msg.contains("storage") && msg.contains("not-a-dir"),
        "{msg}"
    );
    assert!(out.stderr.contains(msg), "{}", out.stderr);
}

/// `chattr -i` on drop, so the sandbox can be removed whatever happens.
pub(crate) struct Immutable(std::path::PathBuf);

impl Immutable {
    pub(crate) fn set(path: &std::path::Path) -> Self {
        sh(&format!("chattr +i '{}'", path.display()));
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_run_that_cannot_store_its_artifact_leaves_no_partial_file() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    sandbox.config(
        "[database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n",
    );
    // The whole artifact is written, then cannot be moved into place.
    let folder = sandbox.storage().join("database/app");
    fs::create_dir_all(&folder).expect("folder");
    let guard = Immutable::set(&folder);
    let out = sandbox.cli(&["backup", "database"]).failure();
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.all()
    );
    let run = only(&sandbox.runs()).clone();
    assert_eq!(run["status"], "failed");
    let partials: Vec<_> = fs::read_dir(sandbox.storage().join(".partial"))
        .expect(".partial")
        .collect();
    assert!(partials.is_empty(), "left behind: {partials:?}");
    drop(guard);
    // The storage works again: so does the next run.
    sandbox.cli(&["backup", "database"]).success();
}

#[test]
fn retention_keeps_the_newest_artifacts_and_never_runs_after_a_failure() {
    let sandbox = Sandbox::new();
    let db = sandbox.sample_db("app.sqlite3");
    sandbox.config("[database_backup]\ndatabases = [\"sqlite://app.sqlite3\"]");
    // Sandbox::config writes [storage] itself; keep comes from the environment.
    let backup = || {
        Run::from(
            sandbox
                .command(&["backup", "database"])
                .env("BACKUP__STORAGE__KEEP", "2")
                .output()
                .expect("run"),
        )
    };
    for _ in 0..3 {
        backup().success();
    }
    let runs = sandbox.runs();
    let ids: Vec<i64> = runs.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, [3, 2, 1]);
    let listed = sandbox
        .cli(&["artifacts", "list", "--json"])
        .success()
        .json();
    let kept: Vec<i64> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["run_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(kept, [3, 2], "the two newest remain");
    assert!(
        !sandbox
            .storage()
            .join(runs[2]["artifact"].as_str().expect("key"))
            .exists()
    );

    fs::remove_file(&db).expect("rm");
    backup().failure();
    let listed = sandbox
        .cli(&["artifacts", "list", "--json"])
        .success()
        .json();
    assert_eq!(
        listed.as_array().expect("array").len(),
        2,
        "a failed run deletes nothing"
    );
    let sha = runs[0]["sha256"].as_str().expect("sha");
    let table = sandbox.cli(&["artifacts", "list"]).success().stdout;
    assert!(table.contains("app") && table.contains(sha), "{table}");
    // A terminal gets the checksum's first 12 digits: a row fits a screen.
    let tty = sandbox
        .cli_on_tty(&["artifacts", "list"], true)
        .success()
        .stdout;
    assert!(tty.contains(&format!("{}…", &sha[..12])), "{tty}");
    assert!(!tty.contains(sha), "{tty}");
    let widest = tty.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= 160, "{widest} columns:\n{tty}");
}

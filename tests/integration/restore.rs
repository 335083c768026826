//! Restore and verify: round trips into real PostgreSQL, MariaDB, SQLite and
//! directories, through local and S3-protocol storage; damaged artifacts
//! refused without changing anything (hostile archives: `hostile.rs`).

use std::{fs, os::unix::fs::symlink, path::Path};

use serde_json::Value;

use crate::{media::tree, mysql, postgres, support::*};

fn backup(sandbox: &Sandbox, kind: &str) -> Value {
    let out = sandbox.cli(&["backup", kind, "--json"]).success();
    out.json()[0].clone()
}

/// Flips one byte in the middle of a file.
fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(path, bytes).expect("write");
}

/// A seeded PostgreSQL database, and a sandbox backing it up as `shop`.
fn shop() -> (PgDb, Sandbox) {
    let source = PgDb::create();
    postgres::seed(&source);
    let sandbox = Sandbox::new();
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [{{ name = \"shop\", url = \"{}\" }}]\n",
        source.url()
    ));
    (source, sandbox)
}

fn restores(sandbox: &Sandbox) -> Vec<Value> {
    let out = sandbox.cli(&["restore", "list", "--json"]).success();
    out.json().as_array().expect("array").clone()
}

#[test]
fn postgresql_round_trips_into_a_fresh_database_and_over_an_existing_one() {
    let (source, sandbox) = shop();
    let run = backup(&sandbox, "database");
    let original = postgres::digest(&source.name);

    // Into a fresh database, as another role's owner would (no owner, no grants).
    let fresh = PgDb::create();
    let out = sandbox
        .cli(&[
            "restore",
            "database",
            "--target",
            "shop",
            "--latest",
            "--into",
            &fresh.url(),
            "--no-owner",
        ])
        .success();
    assert!(
        out.stdout.contains("database shop restored"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("  tables    2"), "{}", out.stdout);
    assert_eq!(postgres::digest(&fresh.name), original);

    // Over the source itself, changed since: refused without --yes (no TTY),
    // nothing changed; with --yes, back to the backup's data.
    source.psql("DELETE FROM orders WHERE id > 10; UPDATE customers SET name = 'changed'");
    let changed = postgres::digest(&source.name);
    let out = sandbox
        .cli(&["restore", "database", "--run", &run["id"].to_string()])
        .failure();
    assert!(
        out.stderr.contains("already has 2 table(s)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert_eq!(
        postgres::digest(&source.name),
        changed,
        "refusal changed nothing"
    );
    sandbox
        .cli(&[
            "restore",
            "database",
            "--run",
            &run["id"].to_string(),
            "--yes",
        ])
        .success();
    assert_eq!(postgres::digest(&source.name), original);

    // Each restore is recorded.
    let rows = restores(&sandbox);
    assert_eq!(rows.len(), 2, "the refused one is not a restore: {rows:#?}");
    for row in &rows {
        assert_eq!(row["status"], "success");
        assert_eq!(row["kind"], "restore");
        assert_eq!(row["backup_type"], "database");
        assert_eq!(row["source_run_id"], run["id"]);
        assert_eq!(row["items"], 2);
        assert!(row["bytes"].as_i64().expect("bytes") > 0);
    }
}

#[test]
fn a_postgresql_restore_that_fails_half_way_changes_nothing() {
    let (_source, sandbox) = shop();
    backup(&sandbox, "database");
    // A destination where the restore must fail part way: a table of the
    // same name with an incompatible shape, and a marker row.
    let dest = PgDb::create();
    dest.psql("CREATE TABLE marker (note text); INSERT INTO marker VALUES ('kept');");
    dest.psql("CREATE VIEW orders AS SELECT 1 AS id");
    let before = dest.psql("SELECT string_agg(note, ',') FROM marker");
    let out = sandbox
        .cli(&["restore", "database", "--into", &dest.url(), "--yes"])
        .failure();
    assert!(out.stderr.contains("restore failed"), "{}", out.all());
    assert!(out.stderr.contains("pg_restore"), "{}", out.all());
    // One transaction: nothing of the backup is there, the old data is.
    assert_eq!(
        dest.psql("SELECT string_agg(note, ',') FROM marker"),
        before
    );
    assert_eq!(
        dest.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'customers'")
            .trim(),
        "0"
    );
    let rows = restores(&sandbox);
    assert_eq!(rows[0]["status"], "failed");
    assert!(
        rows[0]["error_message"]
            .as_str()
            .expect("error")
            .contains("pg_restore"),
        "{rows:#?}"
    );
}

#[test]
fn mariadb_round_trips_into_another_database() {
    let source = MyDb::create();
    mysql::seed(&source);
    let sandbox = Sandbox::new();
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [{{ name = \"shop\", url = \"mariadb://root@127.0.0.1:3306/{}\" }}]\n",
        source.name
    ));
    backup(&sandbox, "database");
    let dest = MyDb::create();
    let out = sandbox
        .command(&["restore", "database"])
        .env(
            "BACKUP_RESTORE_INTO",
            format!("mysql://root@127.0.0.1:3306/{}", dest.name),
        )
        .output()
        .expect("run");
    Run::from(out).success();
    assert_eq!(mysql::digest(&dest), mysql::digest(&source));
    assert_eq!(
        dest.sql(
            "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE()"
        )
        .trim(),
        "1"
    );
    // Into a database of another engine: refused before anything runs.
    let pg = PgDb::create();
    let out = sandbox
        .cli(&["restore", "database", "--into", &pg.url()])
        .failure();
    assert!(out.stderr.contains("is a mysql backup"), "{}", out.stderr);
    assert!(out.stderr.contains("(postgresql)"), "{}", out.stderr);
}

#[test]
fn sqlite_restores_through_s3_and_a_damaged_artifact_leaves_the_old_file() {
    let s3 = s3();
    let bucket = s3.bucket();
    let sandbox = Sandbox::new();
    let db = sandbox.sample_db("app.sqlite3");
    sandbox.raw_config(&format!(
        "[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"s3://{bucket}/b\"\n\
         endpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\n\
         secret_access_key = \"{S3_SECRET_KEY}\"\n\
         [database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://app.sqlite3\" }}]\n",
        s3.endpoint
    ));
    let run = backup(&sandbox, "database");
    let original = sha256_file(&db);
    sh(&format!(
        "sqlite3 '{}' \"DELETE FROM customers\"",
        db.display()
    ));
    let changed = sha256_file(&db);
    assert_ne!(changed, original);

    // A damaged artifact: verify names it, the restore fails, the file stays.
    let object = s3
        .root
        .join(&bucket)
        .join("b")
        .join(run["artifact"].as_str().expect("key"));
    let good = fs::read(&object).expect("read");
    flip_byte(&object);
    let out = sandbox.cli(&["verify", "--latest"]).failure();
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
    assert!(
        out.stderr.contains(run["artifact"].as_str().expect("key")),
        "{}",
        out.stderr
    );
    let out = sandbox.cli(&["restore", "database", "--yes"]).failure();
    assert!(
        out.stderr.contains("is damaged: its sha256 is"),
        "{}",
        out.stderr
    );
    assert_eq!(
        sha256_file(&db),
        changed,
        "a failed restore leaves the old file"
    );
    let shown = sandbox
        .cli(&["runs", "show", &run["id"].to_string(), "--json"])
        .success()
        .json();
    assert!(
        shown["verify_result"]
            .as_str()
            .expect("verify_result")
            .starts_with("failed: "),
        "{shown}"
    );

    fs::write(&object, good).expect("write");
    let out = sandbox
        .cli(&["verify", "--run", &run["id"].to_string()])
        .success();
    assert!(
        out.stdout.contains("SQLite integrity_check ok"),
        "{}",
        out.stdout
    );
    sandbox.cli(&["restore", "database", "--yes"]).success();
    assert_eq!(
        sh(&format!(
            "sqlite3 '{}' 'SELECT count(*) FROM customers'",
            db.display()
        ))
        .trim(),
        sh(&format!(
            "sqlite3 '{}' 'SELECT count(*) FROM customers'",
            sample_db().display()
        ))
        .trim()
    );
    let shown = sandbox
        .cli(&["runs", "show", &run["id"].to_string(), "--json"])
        .success()
        .json();
    assert_eq!(shown["verify_result"], "ok");
    assert!(shown["verified_at"].is_string());
}

#[test]
fn media_round_trips_modes_mtimes_and_links_and_refuses_a_non_empty_directory() {
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir_all(media.join("photos/2026")).expect("dirs");
    fs::create_dir_all(media.join("empty")).expect("dirs");
    fs::write(media.join("photos/2026/a.jpg"), vec![7u8; 300_000]).expect("file");
    fs::write(media.join("readme.txt"), "hello").expect("file");
    fs::write(media.join("script.sh"), "#!/bin/sh\n").expect("file");
    sh(&format!(
        "chmod 755 '{0}/script.sh' && chmod 600 '{0}/readme.txt' && touch -d '2020-01-02 03:04:05' '{0}/readme.txt'",
        media.display()
    ));
    symlink("photos/2026/a.jpg", media.join("latest.jpg")).expect("symlink");
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    let run = backup(&sandbox, "media");

    // Picked by its artifact key, as `restore database` picks one too.
    let by_key = sandbox.path().join("by-key");
    let key = run["artifact"].as_str().expect("artifact key");
    let dir = by_key.to_str().expect("path");
    sandbox
        .cli(&["restore", "media", "--artifact", key, "--to", dir])
        .success();
    assert_eq!(tree(&by_key), tree(&media));

    let to = sandbox.path().join("restored");
    let out = sandbox
        .cli(&["restore", "media", "--to", to.to_str().expect("path")])
        .success();
    assert!(out.stdout.contains("  files     4"), "{}", out.stdout);
    assert_eq!(tree(&to), tree(&media));
    assert_eq!(
        fs::read_link(to.join("latest.jpg")).expect("link"),
        Path::new("photos/2026/a.jpg")
    );

    // Not empty: refused without --force, and untouched.
    fs::write(to.join("readme.txt"), "edited").expect("edit");
    fs::write(to.join("extra.txt"), "mine").expect("extra");
    let out = sandbox
        .cli(&["restore", "media", "--to", to.to_str().expect("path")])
        .failure();
    assert!(
        out.stderr.contains("is not empty; pass --force"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read_to_string(to.join("readme.txt")).expect("read"),
        "edited"
    );
    let dir = to.to_str().expect("path");
    sandbox
        .cli(&["restore", "media", "--to", dir, "--force"])
        .success();
    assert_eq!(
        fs::read_to_string(to.join("readme.txt")).expect("read"),
        "hello"
    );
    assert_eq!(
        fs::read_to_string(to.join("extra.txt")).expect("read"),
        "mine"
    );
}

#[test]
fn verify_catches_flipped_truncated_and_manifestless_artifacts() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    fs::create_dir(sandbox.path().join("media")).expect("media");
    fs::write(sandbox.path().join("media/a.txt"), "a").expect("file");
    sandbox.config(
        "[database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n\
         [media_backup]\npaths = [\"media\"]\n",
    );
    let runs: Vec<Value> = (0..3).map(|_| backup(&sandbox, "database")).collect();
    let media = backup(&sandbox, "media");
    let out = sandbox.cli(&["verify", "--all", "--json"]).success();
    let results = out.json();
    assert_eq!(results.as_array().expect("array").len(), 4);
    assert!(
        results
            .as_array()
            .expect("array")
            .iter()
            .all(|r| r["ok"] == true),
        "{results:#}"
    );

    flip_byte(&sandbox.artifact_path(&runs[0]));
    let truncated = sandbox.artifact_path(&runs[1]);
    let bytes = fs::read(&truncated).expect("read");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("truncate");
    fs::remove_file(format!(
        "{}.manifest.json",
        sandbox.artifact_path(&runs[2]).display()
    ))
    .expect("remove manifest");

    let out = sandbox.cli(&["verify", "--all", "--json"]).failure();
    let results = out.json();
    let by_run = |run: &Value| {
        results
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["artifact"] == run["artifact"])
            .unwrap_or_else(|| panic!("no result for {run}: {results:#}"))
            .clone()
    };
    let flipped = by_run(&runs[0]);
    assert_eq!(flipped["ok"], false);
    assert!(
        flipped["detail"]
            .as_str()
            .expect("detail")
            .contains("sha256"),
        "{flipped}"
    );
    let cut = by_run(&runs[1]);
    assert!(
        cut["detail"]
            .as_str()
            .expect("detail")
            .contains("bytes, its manifest says"),
        "{cut}"
    );
    let orphan = by_run(&runs[2]);
    assert!(
        orphan["detail"]
            .as_str()
            .expect("detail")
            .contains("has no manifest"),
        "{orphan}"
    );
    assert_eq!(by_run(&media)["ok"], true);
    for run in &runs {
        assert!(
            out.stderr.contains(run["artifact"].as_str().expect("key")),
            "{}",
            out.stderr
        );
    }
    // Restores of them fail too, naming the problem.
    for (run, needle) in [
        (&runs[0], "sha256"),
        (&runs[1], "bytes"),
        (&runs[2], "no manifest"),
    ] {
        let out = sandbox
            .cli(&[
                "restore",
                "database",
                "--run",
                &run["id"].to_string(),
                "--into",
                &format!("sqlite://{}/copy.sqlite3", sandbox.path().display()),
            ])
            .failure();
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        assert!(!sandbox.path().join("copy.sqlite3").exists());
    }
}

#[test]
fn a_restore_drill_counts_rows_in_a_scratch_database_and_drops_it() {
    let (source, sandbox) = shop();
    let run = backup(&sandbox, "database");
    let scratch = unique("drill");
    let exists = |name: &str| {
        psql_in(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        )
        .trim()
        .to_string()
    };
    let out = sandbox
        .cli(&[
            "verify",
            "--restore-test",
            "--latest",
            "--target",
            "shop",
            "--scratch",
            &format!("{PG_URL}/{scratch}"),
        ])
        .success();
    let rows = |table: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{table} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no {table} line in {}", out.stdout))
            .to_string()
    };
    assert_eq!(rows("customers"), "2003");
    assert_eq!(rows("orders"), "500");
    assert_eq!(exists(&scratch), "0", "the scratch database was dropped");
    let drills = restores(&sandbox);
    assert_eq!(drills[0]["kind"], "drill");
    assert_eq!(drills[0]["status"], "success");
    assert_eq!(drills[0]["source_run_id"], run["id"]);

    // An existing database is never used (nor dropped) as a scratch.
    let out = sandbox
        .cli(&[
            "verify",
            "--restore-test",
            "--target",
            "shop",
            "--scratch",
            &source.url(),
        ])
        .failure();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert_eq!(exists(&source.name), "1");

    // An artifact whose run has left history (retention) still verifies and
    // drills: by its manifest.
    sh(&format!(
        "sqlite3 '{}' 'DELETE FROM backup_runs'",
        sandbox.path().join("history.db").display()
    ));
    let out = sandbox
        .cli(&[
            "verify",
            "--restore-test",
            "--target",
            "shop",
            "--scratch",
            &format!("{PG_URL}/{}", unique("drill")),
        ])
        .success();
    assert!(
        out.stdout.contains(&format!("run {}", run["id"])),
        "{}",
        out.stdout
    );
}

#[test]
fn the_worker_verifies_on_its_schedule_drills_restores_and_mails_a_damaged_artifact() {
    use crate::{sinks::*, worker_support::*};
    let sink = SmtpSink::start(SmtpOptions::default());
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let config = |schedule: &str| {
        sandbox.config(&format!(
            "admins = [\"root@example.com\"]\n{schedule}\n\
             [smtp]\nurl = \"smtp://127.0.0.1:{}\"\ntls = \"none\"\nfrom = \"b@example.com\"\n\n\
             [http]\nlisten = \"\"\n\n[worker]\nheartbeat_seconds = 1\nshutdown_grace_seconds = 10\n\n\
             [database_backup]\ndatabases = [{{ name = \"good\", url = \"sqlite://app.sqlite3\" }}, \
             {{ name = \"bad\", url = \"sqlite://app.sqlite3\" }}]\n",
            sink.port
        ))
    };
    config("");
    let out = sandbox.cli(&["backup", "database", "--json"]).success();
    let runs = out.json();
    let (good, bad) = (&runs[0], &runs[1]);
    flip_byte(&sandbox.artifact_path(bad));
    // One success mail per backup run.
    assert_eq!(sink.mails().len(), 2);

    config("verify_schedule = \"*/2 * * * * *\"");
    let _worker = Worker::start(&sandbox, "single");
    let mail = wait_for(
        std::time::Duration::from_secs(60),
        "the verification failure mail",
        || {
            sink.mails()
                .into_iter()
                .find(|m| m.subject().contains("Verification"))
        },
    );
    assert!(
        mail.subject()
            .starts_with("[Backup] Database Backup Verification FAILED - "),
        "{}",
        mail.subject()
    );
    let body = mail.body();
    assert!(
        body.starts_with("⚠️ DATABASE BACKUP VERIFICATION FAILED ⚠️\n"),
        "{body}"
    );
    assert!(body.contains("Target: bad\n"), "{body}");
    assert!(body.contains("is damaged: its sha256 is"), "{body}");
    assert!(
        body.contains(&format!("Backup Run ID: {}\n", bad["id"])),
        "{body}"
    );
    let show = |run: &Value| {
        sandbox
            .cli(&["runs", "show", &run["id"].to_string(), "--json"])
            .success()
            .json()
    };
    wait_for(
        std::time::Duration::from_secs(30),
        "both outcomes recorded",
        || (show(good)["verify_result"] == "ok").then_some(()),
    );
    assert!(
        show(bad)["verify_result"]
            .as_str()
            .expect("verify_result")
            .starts_with("failed: "),
    );
    // The good artifact was also restored in a drill.
    let drills: Vec<Value> = restores(&sandbox)
        .into_iter()
        .filter(|r| r["kind"] == "drill")
        .collect();
    assert!(!drills.is_empty());
    assert!(
        drills
            .iter()
            .all(|d| d["target"] == "good" && d["status"] == "success"),
        "{drills:#?}"
    );
    // The backup mail of the bad run still says what it said.
    assert_eq!(show(bad)["notification"], "sent");
}

#[test]
fn postgresql_and_media_round_trip_through_s3_and_a_tty_asks_before_replacing() {
    let s3 = s3();
    let bucket = s3.bucket();
    let source = PgDb::create();
    postgres::seed(&source);
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir_all(media.join("docs")).expect("dirs");
    fs::write(media.join("docs/a.pdf"), vec![1u8; 100_000]).expect("file");
    symlink("docs/a.pdf", media.join("a.pdf")).expect("symlink");
    sandbox.raw_config(&format!(
        "[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"s3://{bucket}/r\"\n\
         endpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{S3_ACCESS_KEY}\"\n\
         secret_access_key = \"{S3_SECRET_KEY}\"\n\
         [database_backup]\ndatabases = [{{ name = \"shop\", url = \"{}\" }}]\n\
         [media_backup]\npaths = [\"media\"]\n",
        s3.endpoint,
        source.url()
    ));
    sandbox.cli(&["backup", "all"]).success();
    sandbox.cli(&["verify", "--all"]).success();

    let fresh = PgDb::create();
    sandbox
        .cli(&["restore", "database", "--into", &fresh.url()])
        .success();
    assert_eq!(
        postgres::digest(&fresh.name),
        postgres::digest(&source.name)
    );
    let to = sandbox.path().join("media-restored");
    sandbox
        .cli(&["restore", "media", "--to", to.to_str().expect("path")])
        .success();
    assert_eq!(tree(&to), tree(&media));

    // On a terminal, restoring over tables asks; no "y" means nothing changes.
    fresh.psql("DELETE FROM orders");
    let before = postgres::digest(&fresh.name);
    let out = sandbox.cli_on_tty(&["restore", "database", "--into", &fresh.url()], true);
    assert!(out.stdout.contains("has 2 table(s)"), "{}", out.stdout);
    assert!(out.stdout.contains("Continue? [y/N]"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("restore cancelled; nothing was changed"),
        "{}",
        out.stdout
    );
    assert_ne!(out.code, 0);
    assert_eq!(postgres::digest(&fresh.name), before);
}

#[test]
fn a_restore_into_a_missing_database_says_how_and_create_makes_it() {
    let (source, sandbox) = shop();
    backup(&sandbox, "database");
    let missing = PgDb {
        name: unique("created"),
    };
    let exists = || {
        psql_in(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                missing.name
            ),
        )
        .trim()
        .to_string()
    };
    let out = sandbox
        .cli(&["restore", "database", "--into", &missing.url()])
        .failure();
    assert!(
        out.stderr.contains("does not exist") && out.stderr.contains("--create"),
        "{}",
        out.stderr
    );
    assert_eq!(exists(), "0", "the refusal created nothing");

    sandbox
        .cli(&["restore", "database", "--into", &missing.url(), "--create"])
        .success();
    assert_eq!(
        postgres::digest(&missing.name),
        postgres::digest(&source.name)
    );

    // Past restores list under a header.
    let table = sandbox.cli(&["restore", "list"]).success().stdout;
    let header = table.lines().next().expect("a header line");
    for column in ["ID", "STARTED", "KIND", "STATUS", "TARGET", "INTO"] {
        assert!(header.contains(column), "{column} in {header:?}");
    }
    assert!(table.contains(&missing.name), "{table}");
}

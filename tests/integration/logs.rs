//! No secret reaches a log line, at any level, in any process: planted
//! secrets are looked for in everything printed at `RUST_LOG=trace`.

use std::time::Duration;

use crate::{support::*, worker_support::*};

const DB_PASSWORD: &str = "Db-Pl4nted/pw";
const DB_PASSWORD_ENCODED: &str = "Db-Pl4nted%2Fpw";
const INTO_PASSWORD: &str = "Into-Pl4nted-pw";
const PING_TOKEN: &str = "Ping-Pl4nted-token";

/// A config backing up `db` (with a password in its URL) to a fresh S3
/// bucket whose secret key comes from the environment, with a ping URL
/// whose path is a secret.
fn s3_config(sandbox: &Sandbox, db: &PgDb, extra: &str) {
    let s3 = s3();
    let bucket = s3.bucket();
    sandbox.raw_config(&format!(
        "{extra}\n[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"s3://{bucket}/logs\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"{S3_ACCESS_KEY}\"\n\
         [database_backup]\nping_url = \"http://127.0.0.1:{}/ping/{PING_TOKEN}\"\n\
         databases = [{{ name = \"app\", url = \"postgres://postgres:{DB_PASSWORD_ENCODED}@127.0.0.1:5432/{}\" }}]\n",
        s3.endpoint,
        closed_port(),
        db.name
    ));
}

fn assert_clean(what: &str, text: &str) {
    for secret in [
        S3_SECRET_KEY,
        DB_PASSWORD,
        DB_PASSWORD_ENCODED,
        INTO_PASSWORD,
        PING_TOKEN,
    ] {
        assert!(
            !text.contains(secret),
            "{what}: {secret:?} was printed:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn the_cli_logs_no_secret_at_trace_level() {
    let db = PgDb::create();
    db.psql("CREATE TABLE t AS SELECT 1 AS i");
    let into = PgDb::create();
    let sandbox = Sandbox::new();
    s3_config(&sandbox, &db, "");
    let into_url = format!(
        "postgres://postgres:{INTO_PASSWORD}@127.0.0.1:5432/{}",
        into.name
    );
    let commands: [&[&str]; 5] = [
        &["-vv", "backup", "database"],
        &["-vv", "artifacts", "list"],
        &["-vv", "verify", "--all"],
        &[
            "-vv", "restore", "database", "--target", "app", "--latest", "--into", &into_url,
            "--yes",
        ],
        &["-vv", "runs", "list"],
    ];
    for args in commands {
        let out = sandbox
            .command(args)
            .env("RUST_LOG", "trace")
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
            .output()
            .expect("run");
        let out = Run::from(out).success();
        // The logs are there: this is trace output, OpenDAL's included.
        assert!(
            out.stderr.contains("TRACE") || out.stderr.contains("DEBUG"),
            "{args:?}: {}",
            out.stderr
        );
        assert_clean(&format!("{args:?}"), &out.all());
    }
    assert_eq!(into.psql("SELECT count(*) FROM t").trim(), "1");
    // A password that is logged masked still shows where it was.
    let out = sandbox
        .command(&["-vv", "artifacts", "list"])
        .env("RUST_LOG", "trace")
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .output()
        .expect("run");
    assert!(Run::from(out).stderr.contains("***"));
}

#[test]
fn the_worker_logs_no_secret_at_trace_level_in_good_runs_and_failed_ones() {
    let db = PgDb::create();
    db.psql("CREATE TABLE t AS SELECT 1 AS i");
    let sandbox = Sandbox::new();
    s3_config(&sandbox, &db, "");
    // A second target that fails on every run, with its own password.
    let text = std::fs::read_to_string(sandbox.path().join("backup.toml")).expect("config");
    let text = text
        .replace(
            "databases = [{",
            &format!(
                "schedule = \"*/2 * * * * *\"\ndatabases = [{{ name = \"gone\", url = \
                 \"postgres://postgres:{INTO_PASSWORD}@127.0.0.1:5432/no_such_db_x\" }}, {{"
            ),
        )
        .replace(
            "[storage]",
            "[worker]\nheartbeat_seconds = 1\nshutdown_grace_seconds = 20\n\
             [retry]\nattempts = 1\nnotification_attempts = 1\n[http]\nlisten = \"\"\n[storage]",
        );
    sandbox.raw_config(&text);
    sandbox.cli(&["schedules", "setup"]).success();
    let mut worker = Worker::start_with(
        &sandbox,
        "trace",
        &[
            ("RUST_LOG", "trace"),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
        ],
    );
    wait_for(
        Duration::from_secs(60),
        "a good run and a failed one",
        || {
            let runs = sandbox.runs();
            let ok = runs.iter().any(|r| r["status"] == "success");
            let failed = runs.iter().any(|r| r["status"] == "failed");
            (ok && failed).then_some(())
        },
    );
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(60));
    let log = worker.log();
    let tail = &log[log.floor_char_boundary(log.len().saturating_sub(5000))..];
    assert!(status.success(), "{tail}");
    assert!(log.lines().count() > 100, "trace output: {tail}");
    assert!(
        log.contains("no_such_db_x"),
        "the failure is logged: {tail}"
    );
    assert_clean("worker log", &log);
}

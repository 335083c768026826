//! PostgreSQL backups against the real server, restored with `pg_restore`.

use std::{
    fs,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::*;

const RUN_FIELDS: [&str; 20] = [
    "id",
    "backup_type",
    "target",
    "status",
    "trigger",
    "triggered_by",
    "scheduled_for",
    "task_id",
    "attempt",
    "worker",
    "started_at",
    "completed_at",
    "duration_seconds",
    "error_message",
    "artifact",
    "size_bytes",
    "sha256",
    "notification",
    "verified_at",
    "verify_result",
];

pub fn seed(db: &PgDb) {
    db.psql(
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text, photo bytea);
         INSERT INTO customers (name, note, photo) VALUES
           ('Zoë Müller', 'naïve café – «quotes» 🚀', '\\x00ff10807f'::bytea),
           ('李雷', E'tab\\there\\nnewline', decode(repeat('00ff', 512), 'hex')),
           ('O''Brien', NULL, NULL);
         INSERT INTO customers (name, note) SELECT 'bulk ' || g, md5(g::text) FROM generate_series(1, 2000) g;
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers(id), payload jsonb);
         INSERT INTO orders SELECT g, 1 + g % 3, jsonb_build_object('n', g, 'tag', 'ü') FROM generate_series(1, 500) g;",
    );
}

/// A digest of every row, comparable across databases.
pub fn digest(db: &str) -> String {
    psql_in(
        db,
        "SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM customers c
         UNION ALL SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o
         UNION ALL SELECT last_value::text FROM customers_id_seq",
    )
}

#[test]
fn backup_restores_identical_data_and_records_a_complete_run() {
    let source = PgDb::create();
    seed(&source);
    let sandbox = Sandbox::new();
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [\"{}\"]",
        source.url()
    ));

    let out = sandbox.cli(&["backup", "database", "--json"]).success();
    let runs = out.json();
    let run = only(runs.as_array().expect("array"));
    let mut keys: Vec<&str> = run
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = RUN_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(run["status"], "success");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["target"], source.name.as_str());
    assert_eq!(run["error_message"], "");
    assert_eq!(run["attempt"], 1);
    assert_eq!(run["notification"], "skipped", "no [smtp] here");

    let artifact = sandbox.artifact_path(run);
    let key = run["artifact"].as_str().expect("key");
    assert!(
        key.starts_with(&format!("database/{0}/{0}-", source.name)) && key.ends_with(".dump.zst"),
        "{key}"
    );
    assert_eq!(mode(&artifact), 0o600, "artifacts are private");
    assert_eq!(sha256_file(&artifact), run["sha256"].as_str().expect("sha"));
    assert_eq!(
        fs::metadata(&artifact).expect("meta").len(),
        run["size_bytes"].as_u64().expect("size")
    );

    let manifest_path = std::path::PathBuf::from(format!("{}.manifest.json", artifact.display()));
    assert_eq!(mode(&manifest_path), 0o600, "manifests are private");
    let manifest: Value = serde_json::from_slice(&fs::read(&manifest_path).expect("manifest"))
        .expect("manifest JSON");
    assert_eq!(manifest["engine"], "postgresql");
    assert_eq!(manifest["compression"], "zstd");
    assert_eq!(manifest["sha256"], run["sha256"]);
    assert_eq!(manifest["run_id"], run["id"]);
    assert!(
        manifest["server_version"]
            .as_str()
            .expect("server version")
            .starts_with(char::is_numeric)
    );
    assert!(
        manifest["tool_version"]
            .as_str()
            .expect("tool")
            .contains("pg_dump")
    );

    let restored = PgDb::create();
    sh(&format!(
        "zstd -dc '{}' | pg_restore --no-owner --exit-on-error -h 127.0.0.1 -U postgres -d {}",
        artifact.display(),
        restored.name
    ));
    assert_eq!(digest(&restored.name), digest(&source.name));
    assert_eq!(
        restored
            .psql("SELECT note FROM customers WHERE name = 'Zoë Müller'")
            .trim(),
        "naïve café – «quotes» 🚀"
    );

    // The same run, as history shows it.
    let history = sandbox.runs();
    assert_eq!(only(&history)["id"], run["id"]);
    assert_eq!(only(&history)["sha256"], run["sha256"]);
}

#[test]
fn gzip_and_uncompressed_artifacts_restore_with_standard_tools() {
    let source = PgDb::create();
    seed(&source);
    for (codec, ext, decompress) in [("gzip", ".dump.gz", "gunzip -c"), ("none", ".dump", "cat")] {
        let sandbox = Sandbox::new();
        sandbox.config(&format!(
            "[compression]\nalgorithm = \"{codec}\"\n[database_backup]\ndatabases = [\"{}\"]",
            source.url()
        ));
        let runs = sandbox
            .cli(&["backup", "database", "--json"])
            .success()
            .json();
        let run = only(runs.as_array().expect("array"));
        let key = run["artifact"].as_str().expect("key");
        assert!(key.ends_with(ext), "{codec}: {key}");
        let restored = PgDb::create();
        sh(&format!(
            "{decompress} '{}' | pg_restore --no-owner --exit-on-error -h 127.0.0.1 -U postgres -d {}",
            sandbox.artifact_path(run).display(),
            restored.name
        ));
        assert_eq!(digest(&restored.name), digest(&source.name), "{codec}");
    }
}

#[test]
fn password_reaches_pg_dump_through_the_environment_never_argv_or_output() {
    let source = PgDb::create();
    seed(&source);
    let sandbox = Sandbox::new();
    let record = sandbox.path().join("argv.txt");
    let wrapper = sandbox.path().join("pg_dump");
    // Records what pg_dump is given, then runs the real one.
    script(
        &wrapper,
        &format!(
            "if [ \"$1\" != --version ]; then echo \"$*\" > '{0}'; echo \"env:$PGPASSWORD\" >> '{0}'; fi\nexec /usr/bin/pg_dump \"$@\"",
            record.display()
        ),
    );
    let secret = "Sup3r-Secret-pw";
    sandbox.config(&format!(
        "[tools]\npg_dump = \"{}\"\n[database_backup]\ndatabases = [\"postgres://postgres:{secret}@127.0.0.1:5432/{}\"]",
        wrapper.display(),
        source.name
    ));
    let out = sandbox.cli(&["backup", "database"]).success();
    let recorded = fs::read_to_string(&record).expect("wrapper ran");
    let (argv, env) = recorded.split_once('\n').expect("two lines");
    assert_no_secret(argv, secret);
    assert!(argv.contains("--format=custom"), "{argv}");
    assert_eq!(
        env.trim(),
        format!("env:{secret}"),
        "the password travels in PGPASSWORD"
    );
    assert_no_secret(&out.all(), secret);
    assert_no_secret(&sandbox.cli(&["runs", "list", "--json"]).stdout, secret);
    assert_no_secret(&sandbox.cli(&["config", "check"]).all(), secret);
}

/// Runs a backup of `url` expected to fail; returns its run and output.
fn failing_backup(
    sandbox: &Sandbox,
    extra: &str,
    url: &str,
    path_env: Option<&Path>,
) -> (Value, Run) {
    sandbox.config(&format!(
        "{extra}\n[database_backup]\ndatabases = [{{ url = \"{url}\", name = \"app\" }}]"
    ));
    let mut cmd = sandbox.command(&["backup", "database"]);
    if let Some(dir) = path_env {
        cmd.env("PATH", dir);
    }
    let out = Run::from(cmd.output().expect("run")).failure();
    let runs = sandbox.runs();
    let run = only(&runs).clone();
    assert_eq!(run["status"], "failed");
    assert!(
        run["artifact"].is_null() && run["sha256"].is_null(),
        "{run}"
    );
    let message = run["error_message"].as_str().expect("message").to_string();
    assert!(
        !message.is_empty() && !message.contains('\n'),
        "one-line cause: {message:?}"
    );
    assert!(
        out.stderr.contains(&message),
        "stderr has the cause:\n{}",
        out.stderr
    );
    assert_eq!(
        sandbox.stored_files(),
        Vec::<String>::new(),
        "a failed run leaves no artifact"
    );
    (run, out)
}

#[test]
fn missing_database_unreachable_server_and_missing_or_old_pg_dump_fail_clearly() {
    let sandbox = Sandbox::new();
    let (run, _) = failing_backup(&sandbox, "", &format!("{PG_URL}/{}", unique("nope")), None);
    assert!(
        run["error_message"]
            .as_str()
            .expect("msg")
            .contains("does not exist"),
        "{run}"
    );

    let sandbox = Sandbox::new();
    let port = closed_port();
    let (run, _) = failing_backup(
        &sandbox,
        "",
        &format!("postgres://postgres:pw@127.0.0.1:{port}/app"),
        None,
    );
    let msg = run["error_message"].as_str().expect("msg");
    assert!(
        msg.contains("Connection refused") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );

    let db = PgDb::create();
    let sandbox = Sandbox::new();
    let empty = tempfile::tempdir().expect("dir");
    let (run, _) = failing_backup(&sandbox, "", &db.url(), Some(empty.path()));
    let msg = run["error_message"].as_str().expect("msg");
    assert!(
        msg.contains("pg_dump not found on PATH") && msg.contains("postgresql-client"),
        "{msg}"
    );

    let sandbox = Sandbox::new();
    let old = sandbox.path().join("pg_dump-9.6");
    script(&old, "echo 'pg_dump (PostgreSQL) 9.6.24'");
    let (run, _) = failing_backup(
        &sandbox,
        &format!("[tools]\npg_dump = \"{}\"", old.display()),
        &db.url(),
        None,
    );
    let msg = run["error_message"].as_str().expect("msg");
    assert!(
        msg.contains("pg_dump 9.6.24 is older than server") && msg.contains("tools.pg_dump"),
        "{msg}"
    );
}

#[test]
fn pg_dump_killed_half_way_fails_the_run_and_leaves_no_artifact() {
    let source = PgDb::create();
    source.psql("CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload FROM generate_series(1, 1500000) g");
    let sandbox = Sandbox::new();
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [\"{}\"]",
        source.url()
    ));
    let child = sandbox
        .command(&["backup", "database"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");

    // Find this backup's pg_dump by its environment, wait until it has
    // written output, then kill it.
    let needle = format!("PGDATABASE={}", source.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        assert!(Instant::now() < deadline, "pg_dump never started writing");
        let found = fs::read_dir("/proc")
            .expect("proc")
            .filter_map(Result::ok)
            .find_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
                let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
                let written: u64 = io
                    .lines()
                    .find_map(|l| l.strip_prefix("wchar: "))?
                    .trim()
                    .parse()
                    .ok()?;
                let ours = comm.trim() == "pg_dump"
                    && environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
                (ours && written > 64 * 1024).then_some(pid)
            });
        if let Some(pid) = found {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    sh(&format!("kill -9 {pid}"));
    let out = Run::from(child.wait_with_output().expect("wait")).failure();

    let runs = sandbox.runs();
    let run = only(&runs);
    assert_eq!(run["status"], "failed");
    let msg = run["error_message"].as_str().expect("msg");
    assert!(
        msg.contains("pg_dump") && msg.contains("killed by signal 9"),
        "{msg}"
    );
    assert!(out.stderr.contains("killed by signal 9"), "{}", out.stderr);
    assert_eq!(
        sandbox.stored_files(),
        Vec::<String>::new(),
        "no artifact, no manifest, no partial file"
    );
}

#[test]
fn history_can_live_in_postgresql() {
    let history = PgDb::create();
    let sandbox = Sandbox::new();
    sandbox.raw_config(&format!(
        "[history]\nurl = \"{}\"\n[storage]\nurl = \"file://storage\"\n[database_backup]\ndatabases = [\"sqlite://{}\"]",
        history.url(),
        sample_db().display()
    ));
    let first = sandbox.cli(&["migrate"]).success();
    assert!(
        first.stdout.contains("5 migration(s) applied"),
        "{}",
        first.stdout
    );
    let again = sandbox.cli(&["migrate"]).success();
    assert!(
        again.stdout.contains("0 migration(s) applied"),
        "{}",
        again.stdout
    );

    sandbox.cli(&["backup", "database"]).success();
    let runs = sandbox.runs();
    assert_eq!(only(&runs)["status"], "success");
    assert_eq!(
        history
            .psql("SELECT status || ' ' || target FROM backup_runs")
            .trim(),
        "success sample"
    );
}

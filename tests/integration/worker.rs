//! The worker: real `backup-worker` processes on the real Redis, running
//! scheduled and triggered backups of real databases.

use std::{fs, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{support::*, worker_support::*};

const SLOW: Duration = Duration::from_secs(90);

const SQLITE_EVERY_2S: &str = "[database_backup]\nschedule = \"*/2 * * * * *\"\n\
     databases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n";

/// Writes the config: `extra` (top-level keys first), the `queue` section
/// (or none), fast heartbeats and retries, the HTTP listener on `http` (or
/// off).
fn config(sandbox: &Sandbox, queue: &str, http: Option<u16>, extra: &str) {
    let listen = http.map_or(String::new(), |p| format!("127.0.0.1:{p}"));
    sandbox.config(&format!(
        "{extra}\n{queue}\n[worker]\nheartbeat_seconds = 1\nshutdown_grace_seconds = 30\n\n\
         [retry]\nattempts = 3\nbackoff_seconds = 1\nmax_backoff_seconds = 2\n\n\
         [http]\nlisten = \"{listen}\"\n"
    ));
}

/// A sandbox backing up a fresh PostgreSQL database through a `pg_dump`
/// wrapper whose body (`script`, before it execs the real pg_dump) makes
/// the dump slow.
fn slow_pg_dump(ns: &Namespace, script_body: &str) -> (Sandbox, PgDb) {
    let sandbox = Sandbox::new();
    let db = PgDb::create();
    db.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
    script(
        &sandbox.path().join("slow-pg_dump"),
        &format!(
            "[ \"$1\" = --version ] && exec pg_dump \"$@\"\n{script_body}\nexec pg_dump \"$@\""
        ),
    );
    config(
        &sandbox,
        &ns.section(),
        None,
        &format!(
            "[tools]\npg_dump = \"./slow-pg_dump\"\n\n[database_backup]\ndatabases = [\"{}\"]\n",
            db.url()
        ),
    );
    (sandbox, db)
}

fn time(run: &Value, key: &str) -> DateTime<Utc> {
    run[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {run}"))
        .parse()
        .expect("RFC 3339 time")
}

fn successes(sandbox: &Sandbox) -> Vec<Value> {
    runs_oldest_first(sandbox)
        .into_iter()
        .filter(|r| r["status"] == "success")
        .collect()
}

/// The task id printed by `trigger`.
fn task_id(out: &Run) -> String {
    out.stdout
        .split("task ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no task id in {:?}", out.stdout))
        .to_string()
}

#[test]
fn three_replicas_run_each_fire_time_exactly_once() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    config(&sandbox, &ns.section(), None, SQLITE_EVERY_2S);
    sandbox.cli(&["schedules", "setup"]).success();

    let mut workers: Vec<Worker> = (0..3)
        .map(|i| Worker::start(&sandbox, &i.to_string()))
        .collect();
    wait_for(SLOW, "8 successful runs", || {
        (successes(&sandbox).len() >= 8).then_some(())
    });
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
    for w in &mut workers {
        assert!(
            w.wait_exit(Duration::from_secs(40)).success(),
            "{}",
            w.log()
        );
    }

    let runs = runs_oldest_first(&sandbox);
    let ids: Vec<String> = workers.iter().map(Worker::id).collect();
    let mut fires = Vec::new();
    for run in &runs {
        assert_eq!(run["status"], "success", "{run}");
        assert!(
            run["trigger"] == "schedule" || run["trigger"] == "catch_up",
            "{run}"
        );
        assert_eq!(run["attempt"], 1, "{run}");
        assert!(run["task_id"].is_string(), "{run}");
        assert!(
            ids.contains(&run["worker"].as_str().expect("worker").to_string()),
            "{run}"
        );
        fires.push(time(run, "scheduled_for"));
    }
    fires.sort();
    let mut unique = fires.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        fires.len(),
        "a fire time ran twice: {fires:?}"
    );
    for pair in fires.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            2,
            "a fire time was skipped: {fires:?}"
        );
    }
}

#[test]
fn a_killed_workers_backup_is_finished_as_lost_and_run_again_by_another() {
    let ns = Namespace::new();
    // The first dump hangs (the worker running it is killed); later ones run.
    let (sandbox, _db) = slow_pg_dump(
        &ns,
        "flag=\"$(dirname \"$0\")/first-dump-started\"\n\
         if [ ! -e \"$flag\" ]; then touch \"$flag\"; sleep 60; fi",
    );
    let flag = sandbox.path().join("first-dump-started");
    let workers = [Worker::start(&sandbox, "a"), Worker::start(&sandbox, "b")];
    let task = task_id(&sandbox.cli(&["trigger", "database"]).success());

    let running = wait_for(SLOW, "the backup to start", || {
        runs_oldest_first(&sandbox)
            .into_iter()
            .find(|r| r["status"] == "running")
    });
    // Kill it mid-dump: once the dump tool is running.
    wait_for(SLOW, "the dump to start", || flag.exists().then_some(()));
    // Its unfinished upload is named for its run.
    let partial_of_run = || -> Vec<String> {
        let prefix = format!("{}.", running["id"]);
        fs::read_dir(sandbox.storage().join(".partial"))
            .map(|d| {
                d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(partial_of_run().len(), 1, "the run's partial upload");
    let victim = workers
        .iter()
        .find(|w| running["worker"] == w.id())
        .expect("the run belongs to one of the workers");
    victim.signal(libc::SIGKILL);

    // Recovery bound: 3 missed heartbeats (3 s here; 30 s by default) plus
    // the target lock expiring (the same), plus polling.
    let done = wait_for(
        Duration::from_secs(60),
        "the job to run again and succeed",
        || {
            runs_oldest_first(&sandbox)
                .into_iter()
                .find(|r| r["task_id"] == task.as_str() && r["status"] == "success")
        },
    );
    assert_ne!(
        done["worker"], running["worker"],
        "the dead worker cannot have finished it"
    );

    let lost = sandbox
        .cli(&["runs", "show", &running["id"].to_string(), "--json"])
        .success()
        .json();
    assert_eq!(lost["status"], "failed", "{lost}");
    let error = lost["error_message"].as_str().expect("error");
    assert!(error.contains("worker lost"), "{error}");
    assert_eq!(lost["task_id"], task.as_str());

    // Nothing of the killed run is left: its partial upload went when the
    // run was taken over, not a day later; only the successful artifact
    // and its manifest remain.
    assert_eq!(partial_of_run(), Vec::<String>::new());
    let visible = sandbox.stored_files();
    let artifact = done["artifact"].as_str().expect("artifact").to_string();
    assert_eq!(
        visible,
        vec![artifact.clone(), format!("{artifact}.manifest.json")]
    );
}

#[test]
fn transient_failures_are_retried_with_a_row_per_attempt_then_given_up() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    // Nothing listens there: a connection error, which may pass.
    let url = format!("postgres://postgres@127.0.0.1:{}/app", closed_port());
    config(
        &sandbox,
        &ns.section(),
        None,
        &format!("[database_backup]\ndatabases = [\"{url}\"]\n"),
    );
    let _worker = Worker::start(&sandbox, "a");
    ns.wait_for_worker("database");

    let out = sandbox.cli(&["trigger", "database", "--wait"]);
    let task = task_id(&out);
    let out = out.failure();
    assert!(out.stdout.contains("app: failed (run "), "{}", out.stdout);

    let runs = runs_oldest_first(&sandbox);
    let attempts: Vec<i64> = runs
        .iter()
        .map(|r| r["attempt"].as_i64().expect("attempt"))
        .collect();
    assert_eq!(attempts, [1, 2, 3], "{runs:#?}");
    for run in &runs {
        assert_eq!(run["status"], "failed");
        assert_eq!(run["task_id"], task.as_str());
        assert_eq!(run["trigger"], "manual");
        assert!(
            run["error_message"]
                .as_str()
                .expect("error")
                .contains("Connection refused"),
            "{run}"
        );
    }
    // Exponential backoff: 1 s, then 2 s.
    let gap =
        |a: &Value, b: &Value| (time(b, "started_at") - time(a, "completed_at")).num_milliseconds();
    assert!(gap(&runs[0], &runs[1]) >= 1000, "{runs:#?}");
    assert!(gap(&runs[1], &runs[2]) >= 2000, "{runs:#?}");
    // Each retry was a later delivery of the job: the first two ended done,
    // the last one ended the job as dead, so the backend never runs it
    // again on its own (it would, up to 25 times, for a delivery that ended
    // failed); nothing of the job is left queued.
    let members = |key: &str| -> Vec<String> {
        ns.redis(&["SMEMBERS", &format!("{}:database:{key}", ns.name)])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    wait_for(SLOW, "the last delivery to be filed as dead", || {
        (members("dead").len() == 1).then_some(())
    });
    let done = members("done");
    assert!(done.len() == 2 && done.contains(&task), "{done:?}");
    assert!(members("failed").is_empty());
    let scheduled = ns.redis(&["ZCARD", &format!("{}:database:scheduled", ns.name)]);
    let active = ns.redis(&["LLEN", &format!("{}:database:active", ns.name)]);
    assert_eq!((scheduled.trim(), active.trim()), ("0", "0"));
}

#[test]
fn permanent_errors_are_not_retried() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    let url = format!("{PG_URL}/{}", unique("missing"));
    config(
        &sandbox,
        &ns.section(),
        None,
        &format!("[database_backup]\ndatabases = [\"{url}\"]\n"),
    );
    let _worker = Worker::start(&sandbox, "a");
    ns.wait_for_worker("database");

    let out = sandbox.cli(&["trigger", "database", "--wait"]).failure();
    assert!(out.stdout.contains("does not exist"), "{}", out.stdout);
    let runs = runs_oldest_first(&sandbox);
    let run = only(&runs);
    assert_eq!(run["attempt"], 1);
    assert_eq!(run["status"], "failed");
}

#[test]
fn trigger_enqueues_for_the_workers_and_wait_reports_the_outcome() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    std::fs::create_dir(sandbox.path().join("media")).expect("media dir");
    std::fs::write(sandbox.path().join("media/a.txt"), "hello").expect("file");
    config(
        &sandbox,
        &ns.section(),
        None,
        "[database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }, \
         { name = \"copy\", url = \"sqlite://app.sqlite3\" }]\n\n\
         [media_backup]\npaths = [\"media\"]\n",
    );
    let _worker = Worker::start(&sandbox, "a");
    ns.wait_for_worker("database");
    ns.wait_for_worker("media");

    let out = sandbox.cli(&["trigger", "database", "--wait"]).success();
    assert!(
        out.stdout
            .contains("enqueued database backup of app: task "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("enqueued database backup of copy: task "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("app: success (run "), "{}", out.stdout);
    assert!(out.stdout.contains("copy: success (run "), "{}", out.stdout);
    let out = sandbox
        .cli(&["trigger", "media", "--target", "media", "--wait"])
        .success();
    assert!(
        out.stdout.contains("media: success (run "),
        "{}",
        out.stdout
    );

    let runs = runs_oldest_first(&sandbox);
    assert_eq!(runs.len(), 3, "{runs:#?}");
    for run in &runs {
        assert_eq!(run["trigger"], "manual");
        assert_eq!(run["status"], "success");
        assert!(run["task_id"].is_string());
        assert!(run["scheduled_for"].is_null());
    }
    let err = sandbox
        .cli(&["trigger", "database", "--target", "nope"])
        .failure();
    assert!(
        err.stderr.contains("no target named \"nope\""),
        "{}",
        err.stderr
    );
}

#[test]
fn trigger_without_a_queue_points_to_backup() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    sandbox.config("[database_backup]\ndatabases = [\"sqlite://app.sqlite3\"]");
    let out = sandbox.cli(&["trigger", "database"]).failure();
    assert!(
        out.stderr.contains("no [queue] is configured"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("backup-cli backup database"),
        "{}",
        out.stderr
    );
}

#[test]
fn schedule_changes_reach_a_running_worker_without_a_restart() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let port = closed_port();
    let yearly = "[database_backup]\nschedule = \"0 0 1 1 *\"\n\
                  databases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n";
    config(&sandbox, &ns.section(), Some(port), yearly);
    sandbox.cli(&["schedules", "setup"]).success();
    let _worker = Worker::start(&sandbox, "a");
    wait_for(SLOW, "the worker to load the yearly schedule", || {
        (loaded_schedules(port)? == ["database 0 0 1 1 *"]).then_some(())
    });

    config(&sandbox, &ns.section(), Some(port), SQLITE_EVERY_2S);
    let out = sandbox.cli(&["schedules", "setup"]).success();
    assert!(out.stdout.contains("updated database"), "{}", out.stdout);
    // Reloads come every 10 s; the new schedule then fires within 2 s.
    let first = wait_for(Duration::from_secs(30), "a run of the new schedule", || {
        successes(&sandbox).first().cloned()
    });
    assert_eq!(first["trigger"], "schedule", "{first}");

    sandbox.cli(&["schedules", "remove"]).success();
    wait_for(
        Duration::from_secs(30),
        "the worker to drop the schedule",
        || loaded_schedules(port)?.is_empty().then_some(()),
    );
    let dropped = Utc::now();
    // Once dropped, no fire follows: the worker fires on past two periods
    // of the old schedule, and none of them is run.
    wait_for(SLOW, "the worker to look 4 s past the drop", || {
        let until = scheduler_state(port)?["checked_until"]
            .as_str()?
            .parse::<DateTime<Utc>>()
            .ok()?;
        (until > dropped + chrono::TimeDelta::seconds(4)).then_some(())
    });
    let late: Vec<Value> = sandbox
        .runs()
        .into_iter()
        .filter(|r| r["scheduled_for"].is_string() && time(r, "scheduled_for") > dropped)
        .collect();
    assert!(
        late.is_empty(),
        "the removed schedule still fires: {late:?}"
    );
}

#[test]
fn sigterm_lets_the_running_backup_finish_then_exits_0() {
    let ns = Namespace::new();
    let (sandbox, _db) = slow_pg_dump(&ns, "sleep 3");
    let mut worker = Worker::start(&sandbox, "a");
    sandbox.cli(&["trigger", "database"]).success();
    wait_for(SLOW, "the backup to start", || {
        sandbox
            .runs()
            .into_iter()
            .find(|r| r["status"] == "running")
    });
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(40));
    assert!(status.success(), "exit {status:?}\n{}", worker.log());
    let run = only(&sandbox.runs()).clone();
    assert_eq!(run["status"], "success", "{run}");
}

#[test]
fn workers_survive_a_redis_restart_and_health_follows_it() {
    let mut redis = PrivateRedis::start();
    let ns = Namespace::on(&redis.url());
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let port = closed_port();
    config(&sandbox, &ns.section(), Some(port), SQLITE_EVERY_2S);
    sandbox.cli(&["schedules", "setup"]).success();
    let worker = Worker::start(&sandbox, "a");
    wait_for(SLOW, "/healthz 200", || {
        http_get(port, "/healthz").filter(|(c, _)| *c == 200)
    });
    wait_for(SLOW, "a first run", || successes(&sandbox).first().cloned());

    redis.stop();
    let (_, body) = wait_for(SLOW, "/healthz 503 while Redis is down", || {
        http_get(port, "/healthz").filter(|(c, _)| *c == 503)
    });
    assert!(body.contains("queue"), "{body}");
    // The outage lasts 20 s, and /healthz says so throughout.
    let down = std::time::Instant::now();
    while down.elapsed() < Duration::from_secs(20) {
        let (code, _) = http_get(port, "/healthz").expect("the worker answers");
        assert_eq!(code, 503, "healthy while Redis is down");
        std::thread::sleep(Duration::from_millis(500));
    }
    redis.restart();
    let restarted = Utc::now();
    wait_for(SLOW, "/healthz 200 again", || {
        http_get(port, "/healthz").filter(|(c, _)| *c == 200)
    });
    // A few lines for the whole outage, not one per try: it began, it ended.
    let log = wait_for(SLOW, "the worker to log the reconnection", || {
        let log = worker.log();
        log.contains("Redis is reachable again").then_some(log)
    });
    // (The test's workers log debug lines too; an operator's do not.)
    let outage: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("Redis is unreachable"))
        .take_while(|l| !l.contains("Redis is reachable again"))
        .filter(|l| !l.contains("\"level\":\"DEBUG\""))
        .collect();
    assert!(
        !outage.is_empty() && outage.len() <= 4,
        "{} lines while Redis was down:\n{}",
        outage.len(),
        outage.join("\n")
    );
    wait_for(SLOW, "a run after Redis came back", || {
        successes(&sandbox)
            .into_iter()
            .find(|r| time(r, "started_at") > restarted)
    });
    // The queue workers noticed, stopped, and were restarted under fresh
    // names (a name still registered in Redis would be refused): the one
    // registered now is not the first.
    let registered = ns.redis(&[
        "ZRANGE",
        &format!("{}:database:workers", ns.name),
        "0",
        "-1",
    ]);
    let names: Vec<&str> = registered.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| !n.ends_with(":database:0")),
        "database workers registered after the restart: {names:?}"
    );
}

#[test]
fn a_missed_fire_is_caught_up_once_when_a_worker_starts() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let every_3s = "[database_backup]\nschedule = \"*/3 * * * * *\"\n\
                    databases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n";
    config(&sandbox, &ns.section(), None, every_3s);
    sandbox.cli(&["schedules", "setup"]).success();
    // No worker ran while several fire times passed: the schedule was set
    // up 10 s ago, and nothing has fired since.
    let setup = Utc::now() - chrono::TimeDelta::seconds(10);
    let at = setup.format("%Y-%m-%dT%H:%M:%S%.6f+00:00");
    sh(&format!(
        "sqlite3 '{}' \"UPDATE backup_schedules SET created_at = '{at}', updated_at = '{at}'\"",
        sandbox.path().join("history.db").display()
    ));
    let _worker = Worker::start(&sandbox, "a");
    let first = wait_for(SLOW, "a catch-up run", || {
        successes(&sandbox).first().cloned()
    });
    assert_eq!(first["trigger"], "catch_up", "{first}");
    let missed = time(&first, "scheduled_for");
    assert!(
        missed > setup + chrono::TimeDelta::seconds(3) && missed <= time(&first, "started_at"),
        "only the latest miss is caught up: {first}"
    );
    // Only the latest miss is caught up; then the schedule carries on.
    let second = wait_for(SLOW, "a scheduled run", || {
        successes(&sandbox).get(1).cloned()
    });
    assert_eq!(second["trigger"], "schedule", "{second}");
    assert_eq!(
        (time(&second, "scheduled_for") - missed).num_seconds(),
        3,
        "{second}"
    );
    let catch_ups = successes(&sandbox)
        .iter()
        .filter(|r| r["trigger"] == "catch_up")
        .count();
    assert_eq!(catch_ups, 1);
}

#[test]
fn healthz_and_metrics_report_the_worker() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let port = closed_port();
    config(
        &sandbox,
        &ns.section(),
        Some(port),
        "[database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n",
    );
    let _worker = Worker::start(&sandbox, "a");
    let (_, body) = wait_for(SLOW, "/healthz 200", || {
        http_get(port, "/healthz").filter(|(c, _)| *c == 200)
    });
    assert!(body.contains("\"ok\""), "{body}");
    sandbox.cli(&["trigger", "database", "--wait"]).success();

    let (code, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    for line in [
        "backup_runs_total{type=\"database\",target=\"app\",status=\"success\"} 1",
        "backup_queue_depth{queue=\"database\"} 0",
        "backup_run_duration_seconds_count{type=\"database\",target=\"app\"} 1",
        "backup_last_success_timestamp_seconds{type=\"database\",target=\"app\"}",
        "backup_artifact_bytes{type=\"database\",target=\"app\"}",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    assert_eq!(http_get(port, "/nope").map(|(c, _)| c), Some(404));
}

#[test]
fn single_process_mode_runs_schedules_and_refuses_a_second_instance() {
    let sandbox = Sandbox::new();
    config(&sandbox, "", None, SQLITE_EVERY_2S);
    single_process(&sandbox);
}

#[test]
fn single_process_mode_on_postgresql_history() {
    let history = PgDb::create();
    let sandbox = Sandbox::new();
    config(&sandbox, "", None, SQLITE_EVERY_2S);
    let text = std::fs::read_to_string(sandbox.path().join("backup.toml")).expect("config");
    sandbox.raw_config(&text.replace("sqlite://history.db", &history.url()));
    single_process(&sandbox);
    let rows = history
        .psql("SELECT count(*) FROM backup_runs WHERE status = 'success' AND task_id IS NOT NULL");
    assert!(rows.trim().parse::<u32>().expect("count") >= 2, "{rows}");
    let fired = history
        .psql("SELECT last_fire_at IS NOT NULL FROM backup_schedules WHERE name = 'database'");
    assert_eq!(fired.trim(), "t");
}

/// Schedules run in-process (no `[queue]`); a second worker on the same
/// history is refused; SIGTERM exits 0.
fn single_process(sandbox: &Sandbox) {
    sandbox.sample_db("app.sqlite3");
    sandbox.cli(&["schedules", "setup"]).success();
    let mut first = Worker::start(sandbox, "a");
    wait_for(SLOW, "2 scheduled runs", || {
        (successes(sandbox).len() >= 2).then_some(())
    });

    let mut second = Worker::start(sandbox, "b");
    let status = second.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    assert!(
        second.log().contains("another backup-worker already runs"),
        "{}",
        second.log()
    );

    first.signal(libc::SIGTERM);
    assert!(
        first.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        first.log()
    );
    let runs = runs_oldest_first(sandbox);
    assert!(
        runs.iter()
            .all(|r| r["status"] == "success" && r["worker"] == first.id().as_str())
    );
    assert!(
        runs.iter()
            .all(|r| r["trigger"] != "manual" && r["task_id"].is_string())
    );
}

#[test]
fn maintenance_finishes_lost_runs_and_prunes_old_history() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    config(
        &sandbox,
        "",
        None,
        "history_retention_days = 30\n\n[database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n",
    );
    // Two finished runs, one then made 40 days old, and a run left
    // `running` by a process that died an hour ago.
    sandbox.cli(&["backup", "database"]).success();
    sandbox.cli(&["backup", "database"]).success();
    let history = sandbox.path().join("history.db");
    sh(&format!(
        "sqlite3 '{0}' \"UPDATE backup_runs SET started_at = '2020-01-01T00:00:00+00:00' WHERE id = 1;
          INSERT INTO backup_runs (backup_type, target, status, \\\"trigger\\\", attempt, worker, started_at, error_message)
          VALUES ('database', 'app', 'running', 'manual', 1, 'gone-host:4242', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 hour'), '')\"",
        history.display()
    ));
    // Leftovers of killed uploads: one two days old, one being written.
    let partial = sandbox.storage().join(".partial");
    sh(&format!(
        "mkdir -p '{0}' && touch -d '2 days ago' '{0}/old-upload' && touch '{0}/live-upload'",
        partial.display()
    ));
    // The maintenance schedule fires every 2 s here (daily by default).
    let text = std::fs::read_to_string(sandbox.path().join("backup.toml")).expect("config");
    sandbox.raw_config(&text.replace(
        "heartbeat_seconds = 1\n",
        "heartbeat_seconds = 1\nmaintenance_schedule = \"*/2 * * * * *\"\n",
    ));
    let _worker = Worker::start(&sandbox, "a");
    let runs = wait_for(SLOW, "maintenance to prune and repair", || {
        let runs = runs_oldest_first(&sandbox);
        (runs.len() == 2 && runs.iter().all(|r| r["status"] != "running")).then_some(runs)
    });
    let kept = runs
        .iter()
        .find(|r| r["id"] == 2)
        .expect("the recent run is kept");
    assert_eq!(kept["status"], "success");
    let lost = runs
        .iter()
        .find(|r| r["worker"] == "gone-host:4242")
        .expect("the lost run");
    assert_eq!(lost["status"], "failed");
    let error = lost["error_message"].as_str().expect("error");
    assert!(error.contains("worker lost"), "{error}");
    wait_for(SLOW, "the old partial upload to go", || {
        (!partial.join("old-upload").exists()).then_some(())
    });
    assert!(
        partial.join("live-upload").exists(),
        "a fresh partial upload was removed"
    );
}

#[test]
fn backups_of_one_target_never_overlap_across_workers_and_the_cli() {
    let ns = Namespace::new();
    let (sandbox, _db) = slow_pg_dump(&ns, "sleep 2");
    let _workers = [Worker::start(&sandbox, "a"), Worker::start(&sandbox, "b")];
    sandbox.cli(&["trigger", "database"]).success();
    sandbox.cli(&["trigger", "database"]).success();
    // The CLI takes the same per-target lock as the workers.
    sandbox.cli(&["backup", "database"]).success();
    let runs = wait_for(SLOW, "three successful runs", || {
        let runs = successes(&sandbox);
        (runs.len() == 3).then_some(runs)
    });
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = runs
        .iter()
        .map(|r| (time(r, "started_at"), time(r, "completed_at")))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two backups of one target overlapped: {spans:?}"
        );
    }
}

#[test]
fn backup_with_a_queue_it_cannot_reach_refuses_rather_than_back_up_unlocked() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let queue = format!("[queue]\nurl = \"redis://127.0.0.1:{}\"\n", closed_port());
    config(
        &sandbox,
        &queue,
        None,
        "[database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n",
    );
    // Without the per-target lock the workers take, this backup could run
    // beside a worker's backup of the same target.
    let out = sandbox.cli(&["backup", "database"]).failure();
    assert!(
        out.stderr.contains("cannot reach the queue"),
        "{}",
        out.stderr
    );
    assert!(
        sandbox.stored_files().is_empty(),
        "{:?}",
        sandbox.stored_files()
    );
}

#[test]
fn switched_off_backups_never_fire_in_either_mode_and_say_so() {
    for (mode, off, why) in [
        ("queue", "BACKUP__ENABLED", "enabled = false"),
        ("single", "BACKUP__ENABLED", "enabled = false"),
        (
            "single",
            "BACKUP__DATABASE_BACKUP__ENABLED",
            "database_backup.enabled = false",
        ),
    ] {
        let ns = Namespace::new();
        let sandbox = Sandbox::new();
        sandbox.sample_db("app.sqlite3");
        let port = closed_port();
        let queue = if mode == "queue" {
            ns.section()
        } else {
            String::new()
        };
        config(&sandbox, &queue, Some(port), SQLITE_EVERY_2S);
        sandbox.cli(&["schedules", "setup"]).success();
        let worker = Worker::start_with(&sandbox, "a", &[(off, "false")]);
        let started = Utc::now();
        // Two periods of the schedule pass, looked at, and nothing fires.
        let state = wait_fired_past(port, started + chrono::TimeDelta::seconds(5));
        assert!(
            sandbox.runs().is_empty(),
            "{mode}/{off}: {:?}",
            sandbox.runs()
        );
        assert_eq!(state["schedules"][0]["fires"], false, "{state}");
        assert_eq!(state["schedules"][0]["off"], why, "{state}");
        assert_eq!(
            state["scheduled_backups"],
            off != "BACKUP__ENABLED",
            "{state}"
        );
        let log = worker.log();
        assert_eq!(
            log.matches("switched off").count(),
            1,
            "said once at start-up: {log}"
        );
        let list = sandbox
            .command(&["schedules", "list"])
            .env(off, "false")
            .output()
            .expect("run");
        let list = Run::from(list).success();
        assert!(
            list.stdout.contains(&format!("no ({why})")),
            "{}",
            list.stdout
        );
        // By hand, backups still run.
        let by_hand = sandbox
            .command(&["backup", "database"])
            .env(off, "false")
            .output()
            .expect("run");
        Run::from(by_hand).success();
        if mode == "queue" {
            sandbox.cli(&["trigger", "database", "--wait"]).success();
        }
    }
}

#[test]
fn stored_schedules_that_differ_from_the_config_are_reported() {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    sandbox.sample_db("crm.sqlite3");
    let port = closed_port();
    let one = "[database_backup]\nschedule = \"0 0 1 1 *\"\n\
               databases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n";
    config(&sandbox, "", Some(port), one);
    sandbox.cli(&["schedules", "setup"]).success();
    // A target is added to the config, and `schedules setup` forgotten.
    let two = "[database_backup]\nschedule = \"0 0 1 1 *\"\n\
               databases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }, \
                            { name = \"crm\", url = \"sqlite://crm.sqlite3\" }]\n";
    config(&sandbox, "", Some(port), two);
    let worker = Worker::start(&sandbox, "a");
    let (code, body) = wait_for(SLOW, "the worker to report its schedules", || {
        http_get(port, "/healthz").filter(|(_, b)| b.contains("\"drift\":[\""))
    });
    assert_eq!(code, 200, "drift is not an outage: {body}");
    let health: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        health["scheduler"]["drift"][0],
        "schedule database differs from the config: targets app -> app, crm"
    );
    let log = worker.log();
    assert!(
        log.contains("targets app -> app, crm") && log.contains("schedules setup"),
        "{log}"
    );
    let list = sandbox.cli(&["schedules", "list"]).success();
    assert!(
        list.stdout.contains("drift: schedule database differs from the config: targets app -> app, crm; run `backup-cli schedules setup`"),
        "{}",
        list.stdout
    );
    // Applied, the drift is gone.
    sandbox.cli(&["schedules", "setup"]).success();
    assert!(
        !sandbox
            .cli(&["schedules", "list"])
            .success()
            .stdout
            .contains("drift")
    );
}

#[test]
fn metrics_count_backups_that_another_process_made() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.path().join("uploads")).expect("dir");
    std::fs::write(sandbox.path().join("uploads/a.txt"), "a").expect("file");
    let port = closed_port();
    config(
        &sandbox,
        "",
        Some(port),
        "[media_backup]\nenabled = true\npaths = [\"uploads\"]\n",
    );
    let _worker = Worker::start(&sandbox, "a");
    wait_for(SLOW, "/healthz 200", || {
        http_get(port, "/healthz").filter(|(c, _)| *c == 200)
    });
    // A backup by hand: the worker never saw it run.
    let run = sandbox.cli(&["backup", "media", "--json"]).success().json()[0].clone();
    let (code, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains("backup_runs_total{type=\"media\",target=\"uploads\",status=\"success\"} 1"),
        "{metrics}"
    );
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{type=\"media\",target=\"uploads\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(
        value("backup_last_success_timestamp_seconds"),
        time(&run, "completed_at").timestamp() as f64
    );
    assert_eq!(
        value("backup_artifact_bytes"),
        run["size_bytes"].as_f64().expect("size")
    );
}

#[test]
fn trigger_wait_says_when_no_worker_is_alive_and_gives_up_on_a_timeout() {
    let ns = Namespace::new();
    // No worker at all: said at once, and the job stays queued.
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    config(
        &sandbox,
        &ns.section(),
        None,
        "[database_backup]\ndatabases = [{ name = \"app\", url = \"sqlite://app.sqlite3\" }]\n",
    );
    let out = sandbox.cli(&["trigger", "database", "--wait"]).failure();
    assert!(
        out.stderr.contains("no backup-worker is alive"),
        "{}",
        out.stderr
    );
    // (apalis-redis keeps every push in the scheduled set until it is due.)
    let queued = ns.redis(&["ZCARD", &format!("{}:database:scheduled", ns.name)]);
    assert_eq!(queued.trim(), "1", "the job stays queued");
    ns.redis(&["DEL", &format!("{}:database:scheduled", ns.name)]);

    // A backup slower than the timeout: the wait ends, naming the run.
    let (sandbox, _db) = slow_pg_dump(&ns, "sleep 15");
    let mut worker = Worker::start(&sandbox, "a");
    ns.wait_for_worker("database");
    let out = sandbox
        .cli(&["trigger", "database", "--wait", "--timeout", "5"])
        .failure();
    assert!(
        out.stderr.contains("gave up waiting after 5 s"),
        "{}",
        out.stderr
    );
    let run = only(&sandbox.runs()).clone();
    assert_eq!(run["status"], "running", "{run}");
    assert!(
        out.stderr
            .contains(&format!("(run {}, running)", run["id"])),
        "{}",
        out.stderr
    );
    // The only worker dies while a wait goes on: the wait ends.
    let waiting = sandbox
        .command(&["trigger", "database", "--wait"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("trigger");
    worker.signal(libc::SIGKILL);
    worker.wait_exit(Duration::from_secs(10));
    let out = Run::from(waiting.wait_with_output().expect("trigger ended"));
    let out = out.failure();
    assert!(
        out.stderr.contains("no backup-worker is alive any more"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_broken_target_waiting_for_its_retry_never_holds_up_a_healthy_one() {
    let ns = Namespace::new();
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    // Unreachable (retried), missing (permanent), healthy, in that order.
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/gone", closed_port());
    let missing = format!("{PG_URL}/{}", unique("missing"));
    sandbox.config(&format!(
        "{}\n[worker]\nheartbeat_seconds = 1\n[retry]\nattempts = 2\nbackoff_seconds = 5\n\
         [http]\nlisten = \"\"\n\
         [database_backup]\ndatabases = [{{ name = \"unreachable\", url = \"{unreachable}\" }}, \
         {{ name = \"missing\", url = \"{missing}\" }}, \
         {{ name = \"healthy\", url = \"sqlite://app.sqlite3\" }}]\n",
        ns.section()
    ));
    let _worker = Worker::start(&sandbox, "a");
    ns.wait_for_worker("database");
    let out = sandbox.cli(&["trigger", "database", "--wait"]).failure();
    assert!(out.stdout.contains("healthy: success"), "{}", out.stdout);

    let runs = runs_oldest_first(&sandbox);
    let of =
        |target: &str| -> Vec<&Value> { runs.iter().filter(|r| r["target"] == target).collect() };
    let (broken, missing, healthy) = (of("unreachable"), of("missing"), of("healthy"));
    assert_eq!(broken.len(), 2, "two attempts: {runs:#?}");
    assert_eq!(
        missing.len(),
        1,
        "a permanent error is not retried: {runs:#?}"
    );
    assert_eq!(healthy.len(), 1, "{runs:#?}");
    // The healthy backup is done before the broken target's retry starts.
    assert!(
        time(healthy[0], "completed_at") < time(broken[1], "started_at"),
        "{runs:#?}"
    );
    // Jobs of one queue start in the order they were enqueued.
    let firsts: Vec<&str> = runs
        .iter()
        .filter(|r| r["attempt"] == 1)
        .map(|r| r["target"].as_str().expect("target"))
        .collect();
    assert_eq!(firsts, ["unreachable", "missing", "healthy"], "{runs:#?}");
    // Attempts are numbered across deliveries, under one job.
    assert_eq!(broken[0]["task_id"], broken[1]["task_id"]);
    assert_eq!(broken[1]["attempt"], 2);
}

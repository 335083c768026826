//! Calendar retention (keep_daily, keep_weekly, keep_monthly, keep_yearly)
//! as an operator applies it: `artifacts prune --dry-run` says what goes and
//! why the rest stays, `artifacts prune` deletes exactly that, and a second
//! prune deletes nothing.

use std::fs;

use chrono::{Duration, TimeZone, Utc};

use crate::support::*;

/// Writes a backup of target `app` completed at `at` (a file and its
/// manifest, as a run would leave them) into the sandbox's storage.
fn stored_backup(sandbox: &Sandbox, run_id: i64, at: chrono::DateTime<Utc>) -> String {
    let key = format!(
        "database/app/app-{}-{run_id}.sqlite3.zst",
        at.format("%Y%m%dT%H%M%SZ")
    );
    let path = sandbox.storage().join(&key);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, format!("backup {run_id}")).expect("write");
    let manifest = serde_json::json!({
        "version": 1, "run_id": run_id, "backup_type": "database", "target": "app",
        "engine": "sqlite", "format": "SQLite database file", "server_version": null,
        "tool_version": null, "compression": "zstd", "artifact": key,
        "size_bytes": fs::metadata(&path).expect("stat").len(), "sha256": sha256_file(&path),
        "source_bytes": 1, "files": null, "started_at": at, "created_at": at,
    });
    fs::write(
        format!("{}.manifest.json", path.display()),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");
    key
}

#[test]
fn calendar_retention_keeps_a_backup_per_period_and_says_why() {
    let sandbox = Sandbox::new();
    let db = sandbox.sample_db("app.sqlite3");
    // Berlin: 23:30 UTC on 2026-10-31 is already November there.
    sandbox.config(&format!(
        "timezone = \"Europe/Berlin\"\n[database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://{}\" }}]\n",
        db.display()
    ));
    let mut text = fs::read_to_string(sandbox.path().join("backup.toml")).expect("config");
    text = text.replace(
        "[storage]\n",
        "[storage]\nkeep = 2\nkeep_daily = 3\nkeep_monthly = 3\nkeep_yearly = 2\n",
    );
    sandbox.raw_config(&text);
    // Every day at 23:30 UTC from 2025-11-01 to 2026-10-31.
    let first = Utc.with_ymd_and_hms(2025, 11, 1, 23, 30, 0).unwrap();
    let keys: Vec<String> = (0..365)
        .map(|d| stored_backup(&sandbox, d + 1, first + Duration::days(d)))
        .collect();

    let out = sandbox.cli(&["artifacts", "prune", "--dry-run"]).success();
    let line = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not listed:\n{}", out.stdout))
            .to_string()
    };
    // The newest (2026-10-31 23:30 UTC = 2026-11-01 00:30 in Berlin).
    assert!(
        line(&keys[364]).contains("kept: last 1, daily 2026-11-01, monthly 2026-11, yearly 2026"),
        "{}",
        out.stdout
    );
    assert!(line(&keys[363]).contains("kept: last 2, daily 2026-10-31, monthly 2026-10"));
    assert!(line(&keys[362]).contains("kept: daily 2026-10-30"));
    assert!(line(&keys[332]).contains("kept: monthly 2026-09"));
    // 2025's newest is 2025-12-31 23:30 UTC = 2026-01-01 in Berlin, so the
    // year 2025 is kept by the backup of 2025-12-30.
    assert!(
        line(&keys[59]).contains("kept: yearly 2025"),
        "{}",
        line(&keys[59])
    );
    assert!(line(&keys[10]).starts_with("  delete"));
    assert!(
        out.stdout
            .contains("database app: keep 5, would delete 360"),
        "{}",
        out.stdout
    );
    assert_eq!(
        sandbox.stored_files().len(),
        2 * 365,
        "a dry run deletes nothing"
    );

    sandbox.cli(&["artifacts", "prune"]).success();
    let left: Vec<String> = sandbox
        .stored_files()
        .into_iter()
        .filter(|f| !f.ends_with(".manifest.json"))
        .collect();
    assert_eq!(left.len(), 5, "{left:#?}");
    for i in [364, 363, 362, 332, 59] {
        assert!(
            left.iter().any(|f| f.ends_with(&keys[i])),
            "{} deleted",
            keys[i]
        );
    }
    let again = sandbox.cli(&["artifacts", "prune"]).success();
    assert!(
        again.stdout.contains("keep 5, deleted 0"),
        "{}",
        again.stdout
    );
}

#[test]
fn manifests_from_the_future_never_push_out_real_backups_or_the_one_just_made() {
    let sandbox = Sandbox::new();
    let db = sandbox.sample_db("app.sqlite3");
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://{}\" }}]\n",
        db.display()
    ));
    let mut text = fs::read_to_string(sandbox.path().join("backup.toml")).expect("config");
    text = text.replace("[storage]\n", "[storage]\nkeep = 3\n");
    sandbox.raw_config(&text);
    for _ in 0..3 {
        sandbox.cli(&["backup", "database"]).success();
    }
    // Planted (or from a clock that ran years ahead): three newer-looking
    // backups, each a whole artifact with a manifest that agrees with its key.
    let far = Utc.with_ymd_and_hms(2099, 12, 31, 23, 59, 0).unwrap();
    for i in 0..3 {
        stored_backup(&sandbox, 901 + i, far + Duration::seconds(i));
    }
    let out = sandbox.cli(&["backup", "database", "--json"]).success();
    let new = out.json()[0].clone();
    let artifact = sandbox.artifact_path(&new);
    assert!(artifact.exists(), "the run deleted its own artifact");
    let left: Vec<String> = sandbox
        .stored_files()
        .into_iter()
        .filter(|f| !f.ends_with(".manifest.json"))
        .collect();
    // Three real ones (runs 2-4) and the three from the future.
    assert_eq!(left.len(), 6, "{left:#?}");
    let out = sandbox.cli(&["artifacts", "prune", "--dry-run"]).success();
    assert_eq!(
        out.stdout.matches("dated in the future").count(),
        3,
        "{}",
        out.stdout
    );
    // A manifest whose times disagree with its key is not believed.
    let key = stored_backup(&sandbox, 950, far);
    let manifest = sandbox.storage().join(format!("{key}.manifest.json"));
    let text = fs::read_to_string(&manifest).expect("manifest");
    fs::write(
        &manifest,
        text.replace("2099-12-31T23:59:00Z", "2020-01-01T00:00:00Z"),
    )
    .expect("write");
    let out = sandbox.cli(&["artifacts", "list"]).success();
    assert!(
        out.stdout.contains("named for another time"),
        "{}",
        out.stdout
    );
    // A 3 GB manifest (sparse) is damaged, not read into memory.
    let huge = stored_backup(&sandbox, 951, far);
    let huge = sandbox.storage().join(format!("{huge}.manifest.json"));
    fs::File::options()
        .write(true)
        .open(&huge)
        .expect("open")
        .set_len(3 << 30)
        .expect("grow");
    let out = sandbox.cli(&["artifacts", "list"]).success();
    assert!(
        out.stdout.contains("a manifest is at most"),
        "{}",
        out.stdout
    );
}

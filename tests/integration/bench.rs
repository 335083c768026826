//! The benchmark harness (`bench/run.sh`) in its quick mode, once, so that it
//! does not rot. Nothing here looks at a time: it checks that every section
//! ran against the real services and reported its figures.

use std::process::Command;

use serde_json::Value;

use crate::support::*;

#[test]
fn the_benchmark_harness_runs_every_section_in_quick_mode() {
    let sandbox = Sandbox::new();
    let report = sandbox.path().join("BENCHMARKS.md");
    let figures = sandbox.path().join("figures.json");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let bin_dir = cli_path().parent().expect("binary dir").to_path_buf();
    let prefix = unique("bq");
    let run = Command::new("bash")
        .arg(root.join("bench/run.sh"))
        .args(["--quick", "--drop-data", "--prefix", &prefix])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--work")
        .arg(sandbox.path().join("work"))
        .arg("--out")
        .arg(&report)
        .arg("--json")
        .arg(&figures)
        .env("BENCH_SKIP_SETUP", "1")
        .current_dir(root)
        .output()
        .expect("run bench/run.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench/run.sh --quick failed:\n{stderr}"
    );
    assert!(report.is_file(), "no report was written");

    let figures: Value =
        serde_json::from_str(&std::fs::read_to_string(&figures).expect("figures written"))
            .expect("figures are JSON");
    // Every pair ran both sides, with a peak RSS for our process.
    let pairs = figures["pairs"].as_array().expect("pairs");
    let titles: Vec<&str> = pairs.iter().filter_map(|p| p["title"].as_str()).collect();
    for section in [
        "1. PostgreSQL backup",
        "2. MariaDB backup",
        "3. Media backup",
        "4. PostgreSQL restore",
        "5. Media restore",
        "6. PostgreSQL backup to S3",
        "7. PostgreSQL backup, encrypted with age",
        "8. Empty PostgreSQL database",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(section)),
            "{section:?} did not run: {titles:?}"
        );
    }
    for pair in pairs {
        for side in ["ours", "raw"] {
            let seconds = pair[side]["seconds"].as_array().expect("seconds");
            assert!(!seconds.is_empty(), "{side} of {pair} never ran");
        }
        assert!(
            pair["ours"]["peak_rss_kb"]["backup-cli"].as_u64() > Some(0),
            "no peak RSS of backup-cli in {pair}"
        );
    }
    // Every storage path, plain and encrypted, backed up and restored.
    let paths = figures["paths"].as_array().expect("paths");
    for storage in ["local disk", "S3", "SFTP", "WebDAV", "Azure"] {
        for encrypted in [false, true] {
            let row = paths
                .iter()
                .find(|r| {
                    r["storage"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(storage))
                        && r["encrypted"] == encrypted
                })
                .unwrap_or_else(|| panic!("no path {storage} (age: {encrypted}): {paths:?}"));
            for run in [
                "backup_large",
                "backup_small",
                "restore_large",
                "restore_small",
            ] {
                assert!(
                    row[run]["peak_rss_kb"]["backup-cli"].as_u64() > Some(0),
                    "{storage} (age: {encrypted}) {run}: {row}"
                );
            }
        }
    }
    for memory in ["backup_small", "restore_small"] {
        assert!(
            figures["memory"][memory]["peak_rss_kb"]["backup-cli"].as_u64() > Some(0),
            "memory at the small size: {}",
            figures["memory"]
        );
    }
    let modes: Vec<&str> = figures["idle"]
        .as_array()
        .expect("idle worker")
        .iter()
        .filter_map(|i| i["mode"].as_str())
        .collect();
    assert_eq!(modes, ["queue (Redis)", "single process"]);

    // Three replicas fired every second: each fire ran once, none was missed.
    let latency = &figures["latency"];
    assert_eq!(latency["fires"], 5, "{latency}");
    assert_eq!(latency["duplicates"], 0, "{latency}");
    assert_eq!(latency["missed"], 0, "{latency}");

    // --drop-data left neither databases nor scratch files behind.
    let left = sh(&format!(
        "psql -X -At -h 127.0.0.1 -U postgres -d postgres -c \"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'\""
    ));
    assert_eq!(left.trim(), "", "databases left behind");
    assert!(
        !sandbox.path().join("work").join("data").exists(),
        "data left behind"
    );
}

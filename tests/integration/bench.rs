//! The benchmark harness (`bench/run.sh`) in its quick mode, once, so that it
//! does not rot. Nothing here looks at a time: it checks that every section
//! ran against the real services and made it into the report.

use std::process::Command;

use crate::support::*;

#[test]
fn the_benchmark_harness_runs_every_section_in_quick_mode() {
    let sandbox = Sandbox::new();
    let out = sandbox.path().join("BENCHMARKS.md");
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
        .arg(&out)
        .env("BENCH_SKIP_SETUP", "1")
        .current_dir(root)
        .output()
        .expect("run bench/run.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench/run.sh --quick failed:\n{stderr}"
    );

    let report = std::fs::read_to_string(&out).expect("the report was written");
    for section in [
        "### 1. PostgreSQL backup",
        "### 2. MariaDB backup",
        "### 3. Media backup",
        "### 4. PostgreSQL restore",
        "### 5. Media restore",
        "### 6. PostgreSQL backup to S3",
        "### Memory against database size",
        "### Idle worker",
        "### Fire-to-start latency",
    ] {
        assert!(report.contains(section), "no {section:?} in:\n{report}");
    }
    // Every pair has both sides measured, with a peak RSS for our process.
    assert_eq!(report.matches("Ratio: **").count(), 6, "{report}");
    assert_eq!(report.matches("| `backup-cli ").count(), 7, "{report}");
    assert!(report.contains("| queue (Redis) |"), "{report}");
    assert!(report.contains("| single process |"), "{report}");

    // Three replicas fired every second: each fire ran once, none was missed.
    let row = report
        .lines()
        .skip_while(|l| !l.starts_with("| fires |"))
        .nth(2)
        .expect("latency row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[1], "5", "fires: {row}");
    assert_eq!(cells[5], "0", "duplicate runs: {row}");
    assert_eq!(cells[6], "0", "missed fires: {row}");

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

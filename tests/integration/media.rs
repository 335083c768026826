//! Media backups: tar streams of real directory trees, extracted with `tar`.

use std::{fs, os::unix::fs::symlink, path::Path};

use crate::support::*;

/// `kind mode mtime-seconds hash-or-link path` for every entry, sorted.
/// Directory mtimes are left out: removing the skipped entries below
/// changes them on the source side.
pub fn tree(root: &Path) -> Vec<String> {
    let listing = sh(&format!(
        "cd '{}' && find . -mindepth 1 \\( -type f -printf '%y %m %T@ ' -exec sha256sum {{}} \\; \\) -o \\( ! -type f -printf '%y %m %T@ %l %p\\n' \\)",
        root.display()
    ));
    let mut lines: Vec<String> = listing
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (kind, mode, mtime, rest) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let seconds = mtime.split('.').next().unwrap_or_default();
            if kind == "d" {
                format!("{kind} {mode} {rest}")
            } else {
                format!("{kind} {mode} {seconds} {rest}")
            }
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn archive_keeps_names_modes_mtimes_links_and_empty_dirs_and_skips_fifos_and_excludes() {
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir_all(media.join("photos/été 2026")).expect("dirs");
    fs::create_dir_all(media.join("empty dir")).expect("dirs");
    fs::create_dir_all(media.join("cache")).expect("dirs");
    fs::write(
        media.join("photos/été 2026/crème brûlée.jpg"),
        vec![0xffu8; 70_000],
    )
    .expect("write");
    fs::write(media.join("a file with spaces.txt"), "hello\n").expect("write");
    fs::write(media.join("日本語.txt"), "こんにちは\n").expect("write");
    fs::write(media.join("cache/skip.tmp"), "transient").expect("write");
    fs::write(media.join("notes.tmp"), "also excluded").expect("write");
    symlink("a file with spaces.txt", media.join("link to file")).expect("symlink");
    sh(&format!(
        "chmod 640 '{0}/a file with spaces.txt' && chmod 750 '{0}/photos' && touch -h -d '2020-02-29 12:34:56' '{0}/日本語.txt' '{0}/link to file' && mkfifo '{0}/a fifo'",
        media.display()
    ));
    sandbox.config("[media_backup]\npaths = [\"media\"]\nexclude = [\"cache/**\", \"*.tmp\"]");
    let out = sandbox.cli(&["backup", "media"]).success();
    assert!(
        out.stdout.contains("skipped") && out.stdout.contains("a fifo"),
        "{}",
        out.stdout
    );
    let runs = sandbox.runs();
    let run = only(&runs);
    let key = run["artifact"].as_str().expect("key");
    assert!(
        key.starts_with("media/media/media-") && key.ends_with(".tar.zst"),
        "{key}"
    );

    let restored = sandbox.path().join("restored");
    fs::create_dir(&restored).expect("dir");
    sh(&format!(
        "zstd -dc '{}' | tar -xpf - -C '{}'",
        sandbox.storage().join(key).display(),
        restored.display()
    ));

    fs::remove_file(media.join("a fifo")).expect("rm fifo");
    fs::remove_file(media.join("cache/skip.tmp")).expect("rm");
    fs::remove_file(media.join("notes.tmp")).expect("rm");
    let restored_tree = tree(&restored);
    assert_eq!(restored_tree, tree(&media));
    assert!(
        restored_tree
            .iter()
            .any(|l| l.starts_with("f 640 ") && l.ends_with("a file with spaces.txt")),
        "{restored_tree:#?}"
    );
    assert!(
        restored_tree
            .iter()
            .any(|l| l.starts_with("f 644 1582979696 ")),
        "mtime kept: {restored_tree:#?}"
    );
    assert_eq!(
        fs::read_link(restored.join("link to file")).expect("link"),
        Path::new("a file with spaces.txt")
    );
    assert!(restored.join("empty dir").is_dir());
    assert!(!restored.join("a fifo").exists() && !restored.join("notes.tmp").exists());
    assert!(!restored.join("cache/skip.tmp").exists());
}

#[test]
fn missing_or_non_directory_media_paths_fail_the_run_clearly() {
    let sandbox = Sandbox::new();
    fs::write(sandbox.path().join("plain-file"), "x").expect("write");
    sandbox.config(
        "[media_backup]\npaths = [{ path = \"does-not-exist\", name = \"gone\" }, { path = \"plain-file\", name = \"file\" }]",
    );
    let out = sandbox.cli(&["backup", "media"]).failure();
    assert!(
        out.stderr.contains("does-not-exist cannot be read"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("plain-file is not a directory"),
        "{}",
        out.stderr
    );
    let runs = sandbox.runs();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["status"] == "failed"));
    assert!(sandbox.stored_files().is_empty());
}

#[test]
fn backup_all_runs_both_types_and_target_picks_from_either() {
    let sandbox = Sandbox::new();
    let sample = sample_db();
    fs::create_dir(sandbox.path().join("uploads")).expect("dir");
    fs::write(sandbox.path().join("uploads/x.txt"), "x").expect("write");
    sandbox.config(&format!(
        "[database_backup]\ndatabases = [\"sqlite://{}\"]\n[media_backup]\npaths = [\"uploads\"]",
        sample.display()
    ));

    let out = sandbox
        .cli(&["backup", "all", "--target", "nope"])
        .failure();
    assert!(
        out.stderr
            .contains("no target named \"nope\"; configured: database sample, media uploads"),
        "{}",
        out.stderr
    );
    assert!(
        !sandbox.path().join("history.db").exists(),
        "a typo creates nothing"
    );

    let out = sandbox
        .cli(&["backup", "all", "--target", "uploads", "--json"])
        .success();
    let runs = out.json();
    assert_eq!(
        only(runs.as_array().expect("array"))["backup_type"],
        "media"
    );

    let runs = sandbox.cli(&["backup", "all", "--json"]).success().json();
    let kinds: Vec<&str> = runs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["backup_type"].as_str())
        .collect();
    assert_eq!(kinds, ["database", "media"]);
}

//! Hostile input, as a user meets it: archives whose links climb out of the
//! restore directory, manifests that name another target's artifact, `..` as
//! a target, every file kind (sparse too), a full disk, setuid bits and a
//! decompression bomb. Each is refused, contained or reported; the tests
//! check exit codes, messages and the files on disk.

use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::{MetadataExt, symlink},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::*;

/// Puts a media artifact of `bytes` (a tar, compressed as `compression`
/// says: `none` or `zstd`) with a valid manifest into the sandbox's
/// storage, as if run 999 had written it; returns its key.
fn plant_media(sandbox: &Sandbox, target: &str, bytes: &[u8], compression: &str) -> String {
    let ext = if compression == "zstd" { ".zst" } else { "" };
    let key = format!("media/{target}/{target}-20260101T000000Z-999.tar{ext}");
    let path = sandbox.storage().join(&key);
    fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    fs::write(&path, bytes).expect("write");
    let manifest = serde_json::json!({
        "version": 1, "run_id": 999, "backup_type": "media", "target": target,
        "engine": "media", "format": "tar archive", "server_version": null,
        "tool_version": null, "compression": compression, "artifact": key,
        "size_bytes": bytes.len(), "sha256": hex::encode(Sha256::digest(bytes)),
        "source_bytes": bytes.len(), "files": 1,
        "started_at": "2026-01-01T00:00:00Z", "created_at": "2026-01-01T00:00:01Z",
    });
    fs::write(
        format!("{}.manifest.json", path.display()),
        manifest.to_string(),
    )
    .expect("manifest");
    key
}

/// An archive entry: `(name, kind, link)`, kind `f` (a small file), `d`,
/// `l` (a symlink to `link`) or `h` (a hard link to the entry `link`).
type Entry<'a> = (&'a str, &'a str, &'a str);

/// A tar archive built by Python's tarfile from `entries`.
fn hostile_tar(dir: &Path, entries: &[Entry]) -> Vec<u8> {
    let spec: Vec<String> = entries
        .iter()
        .map(|(name, kind, link)| format!("({name:?}, {kind:?}, {link:?})"))
        .collect();
    let out = dir.join("evil.tar");
    sh(&format!(
        "python3 - <<'EOF'\nimport io, tarfile\nt = tarfile.open('{}', 'w', format=tarfile.GNU_FORMAT)\n\
         for name, kind, link in [{}]:\n    i = tarfile.TarInfo(name)\n    data = b''\n\
         \x20   if kind == 'f':\n        data = b'pwned'\n        i.size = len(data)\n\
         \x20   elif kind == 'd':\n        i.type = tarfile.DIRTYPE\n        i.mode = 0o755\n\
         \x20   else:\n        i.type = tarfile.LNKTYPE if kind == 'h' else tarfile.SYMTYPE\n\
         \x20       i.linkname = link\n\
         \x20   t.addfile(i, io.BytesIO(data))\nt.close()\nEOF",
        out.display(),
        spec.join(", ")
    ));
    fs::read(out).expect("tar")
}

/// Files whose name holds `.restore-` (staging leftovers) in `dir`.
fn staging_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".restore-"))
        .collect()
}

/// Runs `restore media --to DIR` with `extra` arguments.
fn restore_media(sandbox: &Sandbox, to: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["restore", "media", "--to", to.to_str().expect("path")];
    args.extend_from_slice(extra);
    sandbox.cli(&args)
}

#[test]
fn archives_reaching_outside_the_directory_are_refused_and_write_nothing() {
    let sandbox = Sandbox::new();
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    let outside = sandbox.path().join("outside");
    fs::create_dir(&outside).expect("outside");
    let cases: [(&str, Vec<Entry>); 4] = [
        (
            "dotdot",
            vec![("ok.txt", "f", ""), ("../outside/pwned", "f", "")],
        ),
        (
            "absolute",
            vec![("ok.txt", "f", ""), ("/tmp/backup-test-pwned-abs", "f", "")],
        ),
        (
            "symlink-out",
            vec![("esc", "l", "../outside"), ("esc/pwned", "f", "")],
        ),
        (
            "symlink-abs",
            vec![("esc", "l", "/tmp"), ("ok.txt", "f", "")],
        ),
    ];
    for (name, entries) in cases {
        let tar = hostile_tar(sandbox.path(), &entries);
        let key = plant_media(&sandbox, name, &tar, "none");
        let to = sandbox.path().join(format!("restore-{name}"));
        let out = restore_media(&sandbox, &to, &["--target", name]).failure();
        assert!(
            out.stderr.contains("outside the restore directory"),
            "{name}: {}",
            out.all()
        );
        assert!(!to.exists(), "{name}: the directory was created");
        assert_eq!(
            fs::read_dir(&outside).expect("ls").count(),
            0,
            "{name}: wrote outside"
        );
        assert!(!Path::new("/tmp/backup-test-pwned-abs").exists());
        // No staging leftovers beside it.
        assert!(staging_leftovers(sandbox.path()).is_empty(), "{name}");
        // Verify applies the same rules: a valid tar that restore refuses is
        // a failed verification, with the entry named.
        let out = sandbox.cli(&["verify", "--target", name]).failure();
        assert!(out.stdout.contains(&key), "{}", out.all());
        assert!(
            out.stdout.contains("a restore would refuse it")
                && out.stdout.contains("outside the restore directory"),
            "{name}: {}",
            out.all()
        );
    }
}

#[test]
fn a_backup_warns_of_links_that_restore_would_refuse() {
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir(&media).expect("media");
    fs::write(media.join("a.txt"), "a").expect("file");
    symlink("/etc/hostname", media.join("abs")).expect("symlink");
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    let out = sandbox.cli(&["backup", "media"]).success();
    assert!(
        out.stdout
            .contains("points outside the directory (/etc/hostname)"),
        "{}",
        out.stdout
    );
    let to = sandbox.path().join("restored");
    let out = restore_media(&sandbox, &to, &[]).failure();
    assert!(
        out.stderr.contains("points outside the restore directory"),
        "{}",
        out.stderr
    );
    assert!(!to.exists());
}

/// Asserts that no symlink under `root` resolves outside it.
#[track_caller]
fn links_stay_inside(root: &Path) {
    let root = fs::canonicalize(root).expect("root");
    let resolved = sh(&format!(
        "find '{}' -type l -print0 | xargs -0 -r readlink -m",
        root.display()
    ));
    for path in resolved.lines() {
        assert!(Path::new(path).starts_with(&root), "a link leads to {path}");
    }
}

#[test]
fn link_chains_that_climb_out_through_earlier_links_are_refused() {
    let sandbox = Sandbox::new();
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    let deep = "d1/d1/d1/d1/d1/d1/d1/d1";
    let (shadow, rootdir) = (format!("{deep}/shadow"), format!("{deep}/rootdir"));
    let up = "../../../../../../../..";
    let (to_shadow, to_root) = (format!("{up}/etc/shadow"), format!("{up}/"));
    let cases: [(&str, Vec<Entry>, &str); 3] = [
        (
            "chain-shadow",
            vec![("d1", "l", "."), (&shadow, "l", &to_shadow)],
            &shadow,
        ),
        (
            "chain-root",
            vec![("d1", "l", "."), (&rootdir, "l", &to_root)],
            &rootdir,
        ),
        (
            "sub-up",
            vec![
                ("sub", "d", ""),
                ("sub/l", "l", ".."),
                ("sub/l/esc", "l", ".."),
            ],
            "sub/l/esc",
        ),
    ];
    for (name, entries, bad) in cases {
        let tar = hostile_tar(sandbox.path(), &entries);
        let key = plant_media(&sandbox, name, &tar, "none");
        let to = sandbox.path().join(format!("restore-{name}"));
        let out = restore_media(&sandbox, &to, &["--target", name]).failure();
        assert!(
            out.stderr.contains(&format!(
                "the archive's entry {bad} would be written through the link"
            )),
            "{name}: {}",
            out.all()
        );
        assert!(out.stderr.contains("nothing is restored"), "{}", out.stderr);
        assert!(!to.exists(), "{name}: the directory was created");
        assert!(staging_leftovers(sandbox.path()).is_empty(), "{name}");
        links_stay_inside(sandbox.path());
        let out = sandbox.cli(&["verify", "--target", name]).failure();
        assert!(
            out.stdout.contains(&key) && out.stdout.contains("a restore would refuse it"),
            "{name}: {}",
            out.all()
        );
        assert!(out.stdout.contains(bad), "{name}: {}", out.stdout);
    }
}

#[test]
fn link_chains_that_stay_inside_restore_and_resolve_inside() {
    let sandbox = Sandbox::new();
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    let entries: [Entry; 5] = [
        ("a", "l", "b"),
        ("b", "d", ""),
        ("b/f", "f", ""),
        ("c", "l", "a/f"),
        ("h", "h", "b/f"),
    ];
    let tar = hostile_tar(sandbox.path(), &entries);
    plant_media(&sandbox, "benign", &tar, "none");
    let to = sandbox.path().join("benign");
    let out = restore_media(&sandbox, &to, &["--target", "benign"]).success();
    assert!(out.stdout.contains("  files     4"), "{}", out.stdout);
    let root = fs::canonicalize(&to).expect("root");
    for name in ["a", "b/f", "c", "h"] {
        let resolved = sh(&format!("readlink -f '{}'", to.join(name).display()));
        assert!(
            Path::new(resolved.trim()).starts_with(&root),
            "{name} -> {resolved}"
        );
    }
    assert_eq!(fs::read_link(to.join("a")).expect("a"), Path::new("b"));
    assert_eq!(fs::read_link(to.join("c")).expect("c"), Path::new("a/f"));
    assert_eq!(fs::read_to_string(to.join("c")).expect("c"), "pwned");
    let ino = |p: &str| fs::metadata(to.join(p)).expect("stat").ino();
    assert_eq!(ino("h"), ino("b/f"), "h is a hard link to b/f");
    links_stay_inside(sandbox.path());
    sandbox.cli(&["verify", "--target", "benign"]).success();
}

/// Writes `[storage]` (keep 2) on local disk or on the S3 server, and two
/// SQLite targets, `app` and `other`; returns the directory where the
/// storage's keys lie as files (s3s-fs serves a directory tree as objects).
fn two_targets(sandbox: &Sandbox, on_s3: bool) -> PathBuf {
    let (storage, dir) = if on_s3 {
        let s3 = s3();
        let bucket = s3.bucket();
        (
            format!(
                "url = \"s3://{bucket}/b\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
                 access_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\"\n",
                s3.endpoint
            ),
            s3.root.join(&bucket).join("b"),
        )
    } else {
        ("url = \"file://storage\"\n".to_string(), sandbox.storage())
    };
    sandbox.raw_config(&format!(
        "[history]\nurl = \"sqlite://history.db\"\n[storage]\n{storage}keep = 2\n\
         [database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://app.sqlite3\" }}, \
         {{ name = \"other\", url = \"sqlite://other.sqlite3\" }}]\n"
    ));
    dir
}

/// Runs SQL on a SQLite file; returns the output, trimmed.
fn sql(db: &Path, query: &str) -> String {
    let out = sh(&format!("sqlite3 '{}' '{query}'", db.display()));
    out.trim().to_string()
}

/// A manifest in `app`'s folder naming `other`'s artifact (newer than app's
/// own), an unparseable one, and a stray old copy of `other`'s manifest:
/// restore, verify, `artifacts list` and retention trust none of them.
fn manifests_are_trusted_only_where_they_lie(on_s3: bool) {
    let sandbox = Sandbox::new();
    let app = sandbox.sample_db("app.sqlite3");
    let other = sandbox.sample_db("other.sqlite3");
    sql(&other, "DELETE FROM orders; DELETE FROM customers");
    let dir = two_targets(&sandbox, on_s3);
    let runs = sandbox
        .cli(&["backup", "database", "--json"])
        .success()
        .json();
    let key_of = |target: &str| {
        let run = runs
            .as_array()
            .expect("runs")
            .iter()
            .find(|r| r["target"] == target)
            .unwrap_or_else(|| panic!("no run of {target}: {runs:#}"));
        (
            run["id"].clone(),
            run["artifact"].as_str().expect("key").to_string(),
        )
    };
    let ((app_run, app_key), (_, other_key)) = (key_of("app"), key_of("other"));
    let manifest_of = |key: &str| -> Value {
        let text = fs::read(dir.join(format!("{key}.manifest.json"))).expect("manifest");
        serde_json::from_slice(&text).expect("json")
    };
    let other_manifest = manifest_of(&other_key);
    // Manifests in app's folder, named and dated for runs of app, that name
    // other's artifact (its size and checksum too): a newer one beside a
    // copy of that artifact, and an old stray one.
    let aimed = |run: i64, at: &str| {
        let mut m = manifest_of(&app_key);
        for field in ["artifact", "sha256", "size_bytes", "source_bytes"] {
            m[field] = other_manifest[field].clone();
        }
        (m["run_id"], m["started_at"], m["created_at"]) = (run.into(), at.into(), at.into());
        m.to_string()
    };
    let forged = "database/app/app-20991231T235959Z-990.sqlite3.zst";
    let put = |key: &str, body: &str| fs::write(dir.join(key), body).expect("plant");
    put(
        &format!("{forged}.manifest.json"),
        &aimed(990, "2099-12-31T23:59:59Z"),
    );
    fs::copy(dir.join(&other_key), dir.join(forged)).expect("artifact");
    let garbled = "database/app/app-20200101T000000Z-991.sqlite3.zst.manifest.json";
    put(garbled, "{not json");
    let stray = "database/app/app-20200102T000000Z-992.sqlite3.zst.manifest.json";
    put(stray, &aimed(992, "2020-01-02T00:00:00Z"));

    // The newest valid backup of app is restored, the forged one named.
    sql(&app, "DELETE FROM customers");
    let out = sandbox
        .cli(&[
            "restore", "database", "--target", "app", "--latest", "--yes",
        ])
        .success();
    assert!(
        out.stderr.contains(&format!(
            "warning: skipped {forged}.manifest.json, newer but damaged: it names artifact \
             \"{other_key}\", but lies beside \"{forged}\""
        )),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .contains(&format!("from      run {app_run} ({app_key})")),
        "{}",
        out.stdout
    );
    let customers = "SELECT count(*) FROM customers";
    assert_eq!(sql(&app, customers), sql(&sample_db(), customers));
    assert_ne!(sql(&app, customers), "0", "other's data was restored");

    // Verify fails the forged artifact, naming it; app's own is fine.
    let out = sandbox
        .cli(&["verify", "--all", "--target", "app"])
        .failure();
    let line = |key: &str| {
        let found = out.stdout.lines().find(|l| l.ends_with(key));
        found
            .unwrap_or_else(|| panic!("no line for {key}: {}", out.stdout))
            .to_string()
    };
    assert!(line(forged).starts_with("FAILED"), "{}", out.stdout);
    assert!(line(&app_key).starts_with("ok"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("manifest {forged}.manifest.json is not valid")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("1 of 2 artifact(s) failed verification"),
        "{}",
        out.stderr
    );

    // Listed as damaged, with the valid ones, and the listing succeeds.
    let out = sandbox.cli(&["artifacts", "list"]).success();
    for (key, why) in [
        (format!("{forged}.manifest.json"), "it names artifact"),
        (garbled.to_string(), "it does not parse"),
        (stray.to_string(), "it names artifact"),
    ] {
        assert!(
            out.stdout.contains(&format!("damaged: {key}: {why}")),
            "{key}: {}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("DAMAGED"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&app_key) && out.stdout.contains(&other_key),
        "{}",
        out.stdout
    );
    let listed = |target: &str| {
        let json = sandbox
            .cli(&["artifacts", "list", "--target", target, "--json"])
            .success()
            .json();
        let items = json.as_array().expect("array").clone();
        let damaged = items.iter().filter(|m| m["damaged"].is_string()).count();
        (items.len() - damaged, damaged)
    };
    assert_eq!(listed("app"), (1, 3));

    // Retention (keep = 2) prunes app's own backups only: other's artifact,
    // named by the stray manifest, stays and still restores.
    for _ in 0..3 {
        sandbox
            .cli(&["backup", "database", "--target", "app"])
            .success();
    }
    assert_eq!(listed("app"), (2, 3));
    assert_eq!(listed("other"), (1, 0));
    for key in [
        other_key.clone(),
        format!("{other_key}.manifest.json"),
        stray.into(),
    ] {
        assert!(dir.join(&key).is_file(), "{key} was deleted");
    }
    assert!(!dir.join(&app_key).exists(), "app's oldest was not pruned");
    let copy = sandbox.path().join("other-copy.sqlite3");
    sandbox
        .cli(&[
            "restore",
            "database",
            "--target",
            "other",
            "--into",
            &format!("sqlite://{}", copy.display()),
        ])
        .success();
    assert_eq!(sql(&copy, customers), "0");
}

#[test]
fn manifests_naming_another_targets_artifact_are_never_trusted_on_local_storage() {
    manifests_are_trusted_only_where_they_lie(false);
}

#[test]
fn manifests_naming_another_targets_artifact_are_never_trusted_on_s3() {
    manifests_are_trusted_only_where_they_lie(true);
}

/// Kinds, modes, mtimes, sizes, link targets and sha256 of every entry
/// under `root`, sorted; `sparse.img` is not hashed (2 GiB of zeros).
fn listing(root: &Path) -> Vec<String> {
    let text = sh(&format!(
        "cd '{}' && {{ find . -mindepth 1 -type d -printf '%y %#m %p\\n'; \
         find . -mindepth 1 ! -type d -printf '%y %#m %Ts %s %p -> %l\\n'; \
         find . -type f ! -name sparse.img -exec sha256sum {{}} +; }}",
        root.display()
    ));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn every_file_kind_and_a_sparse_file_round_trip() {
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir_all(media.join("empty dir")).expect("dirs");
    fs::create_dir_all(media.join("docs")).expect("dirs");
    fs::write(media.join("empty"), "").expect("file");
    fs::write(media.join("été 2026 notes.txt"), "notes\n").expect("file");
    let long = format!("{}.txt", "long-name-".repeat(15));
    fs::write(media.join("docs").join(&long), "a long name\n").expect("file");
    fs::write(media.join("run.sh"), "#!/bin/sh\necho hi\n").expect("file");
    symlink(format!("docs/{long}"), media.join("to long")).expect("symlink");
    sh(&format!(
        "cd '{}' && chmod 755 run.sh && truncate -s 2G sparse.img && echo data >> sparse.img",
        media.display()
    ));
    back_up_media(&sandbox);
    let to = sandbox.path().join("out");
    restore_media(&sandbox, &to, &[]).success();
    let (restored, original) = (listing(&to), listing(&media));
    assert_eq!(restored, original);
    assert!(
        original
            .iter()
            .any(|l| l.starts_with("f 0755 ") && l.contains("./run.sh")),
        "{original:#?}"
    );
    assert!(original.iter().any(|l| l.contains(&long)), "{original:#?}");

    let sparse = to.join("sparse.img");
    let meta = fs::metadata(&sparse).expect("sparse");
    assert_eq!(meta.len(), (2 << 30) + 5);
    let mut file = fs::File::open(&sparse).expect("open");
    file.seek(SeekFrom::End(-5)).expect("seek");
    let mut tail = String::new();
    file.read_to_string(&mut tail).expect("read");
    assert_eq!(tail, "data\n");
    // Holes are kept: the archive records sparse.img's data extents (GNU
    // sparse entries) and the restore seeks over the holes, so the restored
    // file takes a few KiB on disk, not 2 GiB of written zeros.
    assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
    sandbox.cli(&["verify", "--target", "media"]).success();
}

/// Runs `cmd`; kills it and fails if it is still running after `limit`.
fn within(limit: Duration, mut cmd: Command) -> Run {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => Run::from(out.expect("wait")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("{cmd:?} still ran after {limit:?}");
        }
    }
}

#[test]
fn dot_dot_as_a_target_is_refused_at_once_naming_it() {
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir(&media).expect("media");
    fs::write(media.join("a.txt"), "a").expect("file");
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    // Something a climbing target could reach.
    sandbox.cli(&["backup", "media"]).success();
    let to = sandbox.path().join("x");
    let to = to.to_str().expect("path");
    for (args, bad) in [
        (vec!["artifacts", "list", "--target", ".."], ".."),
        (vec!["verify", "--all", "--target", "../.."], "../.."),
        (vec!["restore", "media", "--target", "..", "--to", to], ".."),
    ] {
        let out = within(Duration::from_secs(30), sandbox.command(&args)).failure();
        assert!(
            out.stderr.contains(&format!("target name {bad:?}")),
            "{args:?}: {}",
            out.all()
        );
        assert!(
            out.stderr.len() < 10_000,
            "{args:?}: {} bytes",
            out.stderr.len()
        );
    }
    assert!(!Path::new(to).exists());
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).expect("mount point");
        sh(&format!(
            "mount -t tmpfs -o size={size} tmpfs '{}'",
            dir.display()
        ));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_restore_onto_a_full_disk_fails_saying_so_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir(&media).expect("media");
    sh(&format!(
        "head -c 4M /dev/urandom > '{}/random.bin'",
        media.display()
    ));
    back_up_media(&sandbox);
    let full = sandbox.path().join("full");
    let _mount = Tmpfs::mount(&full, "1m");
    let to = full.join("out");
    let out = restore_media(&sandbox, &to, &[]).failure();
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.all()
    );
    assert!(!to.exists());
    let leftovers = staging_leftovers(&full);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn setuid_and_setgid_bits_are_not_restored() {
    assert_eq!(sh("id -u").trim(), "0", "this test runs as root");
    let sandbox = Sandbox::new();
    let media = sandbox.path().join("media");
    fs::create_dir(&media).expect("media");
    for name in ["suid", "sgid"] {
        fs::write(media.join(name), "#!/bin/sh\n").expect("file");
    }
    sh(&format!(
        "cd '{}' && chmod 4755 suid && chmod 2755 sgid",
        media.display()
    ));
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    let run = sandbox.cli(&["backup", "media", "--json"]).success().json();
    // The archive keeps the bits; the restore drops them.
    let listed = sh(&format!(
        "zstd -dc '{}' | tar -tvf -",
        sandbox.artifact_path(&run[0]).display()
    ));
    assert!(
        listed.contains("-rwsr-xr-x") && listed.contains("-rwxr-sr-x"),
        "{listed}"
    );
    let to = sandbox.path().join("out");
    restore_media(&sandbox, &to, &[]).success();
    for name in ["suid", "sgid"] {
        let mode = fs::metadata(to.join(name)).expect("stat").mode() & 0o7777;
        assert_eq!(mode, 0o755, "{name}: {mode:o}");
    }
}

#[test]
fn verify_reports_how_far_a_small_artifact_expands() {
    let sandbox = Sandbox::new();
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    let work = sandbox.path().join("bomb");
    fs::create_dir(&work).expect("dir");
    // 1 GiB of zeros (a hole, so quick to read) in a tar, zstd-compressed.
    sh(&format!(
        "cd '{}' && truncate -s 1G zeros && tar --format=gnu -cf - zeros | zstd -q -c > bomb.tar.zst",
        work.display()
    ));
    let bytes = fs::read(work.join("bomb.tar.zst")).expect("bomb");
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let key = plant_media(&sandbox, "bomb", &bytes, "zstd");
    let out = sandbox.cli(&["verify", "--target", "bomb"]).success();
    assert!(out.stdout.contains(&key), "{}", out.stdout);
    // What it expands to is measured (the manifest claims its own size).
    let expanded: u64 = out
        .stdout
        .split("expands to ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no expanded size in {}", out.stdout));
    assert!(expanded > 1 << 30, "{expanded}");
    assert!(
        out.stdout
            .contains(&format!("expands to {expanded} bytes (1.0 GiB)")),
        "{}",
        out.stdout
    );
}

/// Backs up the sandbox's `media` folder, which must succeed.
fn back_up_media(sandbox: &Sandbox) {
    sandbox.config("[media_backup]\npaths = [\"media\"]\n");
    sandbox.cli(&["backup", "media"]).success();
}

//! SFTP (a real OpenSSH server), WebDAV (rclone) and Azure Blob Storage
//! (Azurite): the same
//! round trip as local disk and S3 — backup, list, verify, restore,
//! retention — with nothing visible before it is whole, unfinished uploads
//! removed when a run fails, and no credential in any output.

use std::{fs, path::Path};

use crate::{
    media::tree,
    servers::{AZURITE_ACCOUNT, AZURITE_KEY, DAV_PASSWORD, DAV_USER, azurite, sshd, webdav},
    storage::Immutable,
    support::*,
};

/// A sandbox backing up the sample database `app` and a media folder
/// `photos` to the storage that `storage` (a `[storage]` section) names.
fn sandbox_for(storage: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.sample_db("app.sqlite3");
    let photos = sandbox.path().join("photos");
    fs::create_dir_all(photos.join("2026")).expect("mkdir");
    fs::write(photos.join("2026/a.txt"), "first\n").expect("write");
    fs::write(photos.join("b.bin"), vec![7u8; 3 << 20]).expect("write");
    sandbox.raw_config(&format!(
        "[history]\nurl = \"sqlite://history.db\"\n\n{storage}\n\
         [database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://app.sqlite3\" }}]\n\
         [media_backup]\npaths = [{{ path = \"photos\", name = \"photos\" }}]\n"
    ));
    sandbox
}

fn cli(sandbox: &Sandbox, env: &[(String, String)], args: &[&str]) -> Run {
    let mut cmd = sandbox.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("run backup-cli")
        .into()
}

/// Backup twice with keep = 1, list, verify, restore both targets, check
/// retention left one artifact each.
fn round_trip(sandbox: &Sandbox, env: &[(String, String)]) {
    for _ in 0..2 {
        cli(sandbox, env, &["backup", "all"]).success();
    }
    let listed = cli(sandbox, env, &["artifacts", "list", "--json"])
        .success()
        .json();
    let listed = listed.as_array().expect("array");
    assert_eq!(
        listed.len(),
        2,
        "retention keeps one per target: {listed:#?}"
    );
    let out = cli(sandbox, env, &["verify", "--all"]).success();
    assert!(
        out.stdout.contains("SQLite integrity_check ok"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("the tar archive lists"),
        "{}",
        out.stdout
    );

    let restored = sandbox.path().join("restored.sqlite3");
    let into = format!("sqlite://{}", restored.display());
    cli(
        sandbox,
        env,
        &[
            "restore", "database", "--target", "app", "--into", &into, "--create",
        ],
    )
    .success();
    assert_eq!(
        sh(&format!(
            "sqlite3 '{}' 'SELECT count(*) FROM customers'",
            restored.display()
        )),
        sh(&format!(
            "sqlite3 '{}' 'SELECT count(*) FROM customers'",
            sandbox.path().join("app.sqlite3").display()
        ))
    );
    let back = sandbox.path().join("back");
    cli(
        sandbox,
        env,
        &[
            "restore",
            "media",
            "--target",
            "photos",
            "--to",
            &back.to_string_lossy(),
        ],
    )
    .success();
    assert_eq!(tree(&back), tree(&sandbox.path().join("photos")));
}

/// Files under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    walk(dir, dir)
}

fn walk(root: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(root, &path));
        } else {
            out.push(
                path.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
        }
    }
    out.sort();
    out
}

#[test]
fn sftp_round_trips_publishes_whole_files_and_removes_a_failed_upload() {
    let server = sshd();
    let dir = server.directory();
    let sandbox = sandbox_for(&format!(
        "[storage]\nurl = \"sftp://root@127.0.0.1:{}{}\"\nssh_key = \"{}\"\nkeep = 1\n",
        server.port,
        dir.display(),
        server.key.display()
    ));
    let env = server.env();
    round_trip(&sandbox, &env);
    // What the server holds: the two artifacts and their manifests, and
    // no unfinished upload.
    let held = files(&dir);
    assert_eq!(held.len(), 4, "{held:#?}");
    assert!(
        held.iter()
            .all(|f| f.starts_with("database/app/") || f.starts_with("media/photos/")),
        "{held:#?}"
    );

    // The upload is whole, then cannot be moved into place: the run fails
    // and its staged file goes.
    let folder = dir.join("database/app");
    let guard = Immutable::set(&folder);
    let out = cli(&sandbox, &env, &["backup", "database"]).failure();
    drop(guard);
    assert!(out.stderr.contains("rename"), "{}", out.all());
    assert_eq!(files(&dir.join(".partial")), Vec::<String>::new());
    assert_eq!(files(&dir).len(), 4);

    // The host key is checked: a server not in known_hosts is refused.
    let stranger = Sandbox::new();
    stranger.raw_config(&format!(
        "[history]\nurl = \"sqlite://history.db\"\n[storage]\nurl = \"sftp://root@127.0.0.1:{}{}\"\nssh_key = \"{}\"\n",
        server.port,
        dir.display(),
        server.key.display()
    ));
    let mut cmd = stranger.command(&["artifacts", "list"]);
    cmd.env("XDG_STATE_HOME", &server.state);
    // The real ssh, whose known_hosts does not hold this server.
    let out: Run = cmd
        .env("HOME", stranger.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run")
        .into();
    assert_ne!(
        out.code,
        0,
        "an unknown host key was accepted: {}",
        out.all()
    );
    assert!(
        out.all().contains("Host key verification failed"),
        "{}",
        out.all()
    );
}

#[test]
fn azure_blob_round_trips_and_never_shows_the_account_key() {
    let server = azurite();
    let container = server.container();
    let sandbox = sandbox_for(&format!(
        "[storage]\nurl = \"azblob://{container}/backups\"\nendpoint = \"{}\"\naccount_name = \"{AZURITE_ACCOUNT}\"\nkeep = 1\n",
        server.endpoint
    ));
    let env = vec![(
        "BACKUP__STORAGE__ACCOUNT_KEY".to_string(),
        AZURITE_KEY.to_string(),
    )];
    round_trip(&sandbox, &env);
    // Debug logs, config check: the key never shows.
    let out = cli(&sandbox, &env, &["-vv", "backup", "database"]).success();
    assert_no_secret(&out.all(), AZURITE_KEY);
    let out = cli(&sandbox, &env, &["config", "check"]).success();
    assert_no_secret(&out.all(), AZURITE_KEY);
    // A wrong key: refused, said, and recorded as a failed run.
    let bad = vec![(
        "BACKUP__STORAGE__ACCOUNT_KEY".to_string(),
        "d3Jvbmcta2V5".to_string(),
    )];
    let out = cli(&sandbox, &bad, &["backup", "database"]).failure();
    assert!(
        out.stderr.contains("credentials")
            || out.stderr.contains("denied")
            || out.stderr.contains("403"),
        "{}",
        out.all()
    );
}

#[test]
fn webdav_streams_publishes_whole_files_and_removes_a_failed_upload() {
    let server = webdav();
    let name = server.directory();
    let dir = server.dir.join(&name);
    let sandbox = sandbox_for(&format!(
        "[storage]\nurl = \"webdav+http://{}/{name}\"\nusername = \"{DAV_USER}\"\nkeep = 1\n",
        server.endpoint
    ));
    let env = vec![(
        "BACKUP__STORAGE__PASSWORD".to_string(),
        DAV_PASSWORD.to_string(),
    )];
    round_trip(&sandbox, &env);
    let held = files(&dir);
    assert_eq!(held.len(), 4, "{held:#?}");
    assert!(
        held.iter()
            .all(|f| f.starts_with("database/app/") || f.starts_with("media/photos/")),
        "{held:#?}"
    );
    let out = cli(&sandbox, &env, &["-vv", "backup", "media"]).success();
    assert_no_secret(&out.all(), DAV_PASSWORD);

    // Whole on the server, then it cannot be moved into place: the run
    // fails and the staged file goes.
    let guard = Immutable::set(&dir.join("database/app"));
    let out = cli(&sandbox, &env, &["backup", "database"]).failure();
    drop(guard);
    assert!(out.stderr.contains("rename"), "{}", out.all());
    assert_eq!(files(&dir.join(".partial")), Vec::<String>::new());
    assert_eq!(files(&dir).len(), 4);

    // A wrong password: refused and said, nothing left behind.
    let bad = vec![("BACKUP__STORAGE__PASSWORD".to_string(), "wrong".to_string())];
    let out = cli(&sandbox, &bad, &["backup", "database"]).failure();
    assert!(out.stderr.contains("Unauthorized"), "{}", out.all());
    assert!(
        out.stderr.contains("check the credentials"),
        "{}",
        out.all()
    );
    assert_no_secret(&out.all(), DAV_PASSWORD);
    assert_eq!(files(&dir).len(), 4);
}

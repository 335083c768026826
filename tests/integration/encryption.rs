//! age encryption: backups need only the public key; what is stored is a
//! standard age file (restorable by hand with `age -d | zstd -dc |
//! pg_restore`); restore and verify say clearly when the identity is
//! missing or wrong, and change nothing then.

use std::{fs, path::PathBuf};

use crate::{postgres, support::*};

/// An age key pair made by Debian's `age-keygen`: (identity file, public key).
fn keygen(sandbox: &Sandbox, name: &str) -> (PathBuf, String) {
    let file = sandbox.path().join(name);
    sh(&format!("age-keygen -o '{}' 2>/dev/null", file.display()));
    let public = sh(&format!("age-keygen -y '{}'", file.display()))
        .trim()
        .to_string();
    assert!(public.starts_with("age1"), "{public}");
    (file, public)
}

#[test]
fn postgresql_encrypted_to_a_public_key_restores_by_hand_and_with_the_identity_only() {
    let source = PgDb::create();
    postgres::seed(&source);
    let original = postgres::digest(&source.name);
    let sandbox = Sandbox::new();
    let (key, public) = keygen(&sandbox, "key.txt");
    let (wrong, _) = keygen(&sandbox, "wrong.txt");
    let (offline, offline_public) = keygen(&sandbox, "offline.txt");
    // The worker's host holds only public keys: one inline, one in a file.
    fs::write(
        sandbox.path().join("recipients.txt"),
        format!("# the offline key\n{offline_public}\n"),
    )
    .expect("write recipients");
    sandbox.config(&format!(
        "[encryption]\nrecipients = [\"{public}\"]\nrecipients_file = \"recipients.txt\"\n\
         [database_backup]\ndatabases = [{{ name = \"shop\", url = \"{}\" }}]\n",
        source.url()
    ));
    let run = sandbox
        .cli(&["backup", "database", "--json"])
        .success()
        .json()[0]
        .clone();
    let artifact = sandbox.artifact_path(&run);
    assert!(
        artifact.to_string_lossy().ends_with(".dump.zst.age"),
        "{}",
        artifact.display()
    );
    // Stored: an age file, its sha256 that of the stored bytes; the manifest
    // names both public keys and no secret.
    let stored = fs::read(&artifact).expect("read artifact");
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    assert_eq!(sha256_file(&artifact), run["sha256"].as_str().expect("sha"));
    let manifest =
        fs::read_to_string(format!("{}.manifest.json", artifact.display())).expect("manifest");
    assert!(
        manifest.contains(&public) && manifest.contains(&offline_public),
        "{manifest}"
    );
    for secret in [&key, &offline] {
        let secret = fs::read_to_string(secret).expect("key");
        let secret = secret
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .expect("secret");
        assert_no_secret(&manifest, secret);
    }

    // By hand, as the README says, with either key.
    for identity in [&key, &offline] {
        let by_hand = PgDb::create();
        sh(&format!(
            "age -d -i '{}' '{}' | zstd -dc | pg_restore --no-owner -d '{}'",
            identity.display(),
            artifact.display(),
            by_hand.url()
        ));
        assert_eq!(postgres::digest(&by_hand.name), original);
    }

    // Without an identity: verify proves the stored bytes whole and says
    // what it could not check; a restore refuses before touching anything.
    let out = sandbox.cli(&["verify", "--latest"]).success();
    assert!(
        out.stdout.contains("sha256 matches the manifest"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("checked only with the identity"),
        "{}",
        out.stdout
    );
    let target = PgDb::create();
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "database", "--target", "shop", "--into"];
        let url = target.url();
        args.push(&url);
        args.push("--no-owner");
        args.extend_from_slice(extra);
        sandbox.cli(&args)
    };
    let out = restore(&[]).failure();
    assert!(
        out.stderr.contains("is encrypted with age"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--identity FILE"), "{}", out.stderr);
    let wrong_arg = wrong.to_string_lossy().into_owned();
    let out = restore(&["--identity", &wrong_arg]).failure();
    assert!(out.stderr.contains("cannot be decrypted"), "{}", out.stderr);
    assert!(!out.stderr.contains("AGE-SECRET-KEY"), "{}", out.stderr);
    assert_eq!(
        target
            .psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .trim(),
        "0"
    );
    assert!(
        sandbox
            .cli(&["restore", "list", "--json"])
            .success()
            .json()
            .as_array()
            .expect("array")
            .is_empty(),
        "a refused restore is not recorded"
    );

    // With the identity (flag, then env): verify reads the dump through,
    // the restore brings back the same data.
    let key_arg = key.to_string_lossy().into_owned();
    let out = sandbox
        .cli(&["verify", "--latest", "--identity", &key_arg])
        .success();
    assert!(
        out.stdout.contains("decrypts and expands to"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("pg_restore --list reads"),
        "{}",
        out.stdout
    );
    restore(&["--identity", &key_arg]).success();
    assert_eq!(postgres::digest(&target.name), original);
    let again = PgDb::create();
    let out = sandbox
        .command(&[
            "restore",
            "database",
            "--target",
            "shop",
            "--into",
            &again.url(),
            "--no-owner",
        ])
        .env("BACKUP__ENCRYPTION__IDENTITY_FILE", &key)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(postgres::digest(&again.name), original);

    // Tampered: one flipped byte is refused by verify and by a restore,
    // which leaves its target as it was.
    let mut bytes = stored.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&artifact, &bytes).expect("write");
    let out = sandbox
        .cli(&["verify", "--latest", "--identity", &key_arg])
        .failure();
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
    let fresh = PgDb::create();
    let out = sandbox
        .cli(&[
            "restore",
            "database",
            "--target",
            "shop",
            "--into",
            &fresh.url(),
            "--no-owner",
            "--identity",
            &key_arg,
        ])
        .failure();
    assert!(
        out.stderr.contains("damaged") || out.stderr.contains("decrypt"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fresh
            .psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .trim(),
        "0"
    );
    // Truncated: the same.
    fs::write(&artifact, &stored[..stored.len() - 200]).expect("write");
    sandbox
        .cli(&["verify", "--latest", "--identity", &key_arg])
        .failure();
}

#[test]
fn media_encrypted_to_a_passphrase_round_trips_and_a_wrong_one_restores_nothing() {
    let sandbox = Sandbox::new();
    let tree = sandbox.path().join("photos");
    fs::create_dir_all(tree.join("2026")).expect("mkdir");
    fs::write(tree.join("2026/a.txt"), "first\n").expect("write");
    fs::write(tree.join("b.bin"), vec![0u8; 100_000]).expect("write");
    sandbox.config("[media_backup]\npaths = [{ path = \"photos\", name = \"photos\" }]\n");
    let passphrase = "correct horse battery staple";
    let with = |pass: &str, args: &[&str]| {
        sandbox
            .command(args)
            .env("BACKUP__ENCRYPTION__PASSPHRASE", pass)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run")
    };
    let out = with(passphrase, &["backup", "media", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let artifact = sandbox.artifact_path(&run[0]);
    assert!(artifact.to_string_lossy().ends_with(".tar.zst.age"));
    let manifest =
        fs::read_to_string(format!("{}.manifest.json", artifact.display())).expect("manifest");
    assert!(manifest.contains("\"passphrase\": true"), "{manifest}");
    assert_no_secret(&manifest, passphrase);

    let into = sandbox.path().join("back");
    let into_arg = into.to_string_lossy().into_owned();
    let out = sandbox
        .cli(&["restore", "media", "--target", "photos", "--to", &into_arg])
        .failure();
    assert!(
        out.stderr.contains("BACKUP__ENCRYPTION__PASSPHRASE"),
        "{}",
        out.all()
    );
    let out = with(
        "a wrong passphrase!!",
        &["restore", "media", "--target", "photos", "--to", &into_arg],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be decrypted"), "{stderr}");
    assert_no_secret(&stderr, "a wrong passphrase!!");
    assert!(
        !into.exists() || fs::read_dir(&into).expect("dir").next().is_none(),
        "nothing restored"
    );

    let out = with(
        passphrase,
        &["restore", "media", "--target", "photos", "--to", &into_arg],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(into.join("2026/a.txt")).expect("read"),
        "first\n"
    );
    assert_eq!(fs::read(into.join("b.bin")).expect("read").len(), 100_000);
}

#[test]
fn bad_encryption_settings_are_refused_at_load_and_never_echo_a_key() {
    let sandbox = Sandbox::new();
    let (key, public) = keygen(&sandbox, "key.txt");
    let secret = fs::read_to_string(&key).expect("key");
    let secret = secret
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("secret")
        .to_string();
    for (config, says) in [
        (
            format!("recipients = [\"{secret}\"]"),
            "this is a secret key",
        ),
        (
            "recipients = [\"age1nope\"]".to_string(),
            "not an age public key",
        ),
        (
            format!("recipients = [\"{public}\"]\npassphrase = \"long enough passphrase\""),
            "not both",
        ),
        ("passphrase = \"short\"".to_string(), "at least 12"),
        (
            "recipients_file = \"missing.txt\"".to_string(),
            "missing.txt",
        ),
    ] {
        sandbox.config(&format!("[encryption]\n{config}\n"));
        let out = sandbox.cli(&["config", "check"]).failure();
        assert!(out.stderr.contains(says), "{config}: {}", out.stderr);
        assert_no_secret(&out.all(), &secret);
    }
}

#[test]
fn an_identity_read_once_serves_every_artifact_and_verify_records_what_it_checked() {
    let sandbox = Sandbox::new();
    let (key, public) = keygen(&sandbox, "key.txt");
    sandbox.sample_db("app.sqlite3");
    sandbox.config(&format!(
        "[encryption]\nrecipients = [\"{public}\"]\n\
         [database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://app.sqlite3\" }}]\n"
    ));
    for _ in 0..2 {
        sandbox.cli(&["backup", "database"]).success();
    }
    let cli = crate::support::cli_path();
    let config = sandbox.path().join("backup.toml");
    // An identity from a pipe (`pass show`, a secret manager) can be read
    // only once: both artifacts, and a restore, open with it.
    let out = sh(&format!(
        "cd '{}' && '{}' --config '{}' verify --all --identity <(cat '{}')",
        sandbox.path().display(),
        cli.display(),
        config.display(),
        key.display()
    ));
    assert_eq!(out.matches("decrypts and expands").count(), 2, "{out}");
    let restored = sandbox.path().join("restored.sqlite3");
    sh(&format!(
        "cd '{}' && '{}' --config '{}' restore database --target app --into 'sqlite://{}' --create --identity <(cat '{}')",
        sandbox.path().display(),
        cli.display(),
        config.display(),
        restored.display(),
        key.display()
    ));
    assert!(restored.exists());

    // Without the identity, history says what was checked.
    sandbox.cli(&["verify", "--latest"]).success();
    let runs = sandbox.runs();
    assert_eq!(
        runs[0]["verify_result"], "ok (stored bytes only: encrypted, not decrypted)",
        "{runs:#?}"
    );
    // A wrong identity, or none readable: said, never recorded against
    // the backups.
    let (wrong, _) = keygen(&sandbox, "wrong.txt");
    let out = sandbox
        .cli(&["verify", "--all", "--identity", &wrong.to_string_lossy()])
        .failure();
    assert!(out.stdout.contains("cannot be decrypted"), "{}", out.all());
    let out = sandbox
        .cli(&["verify", "--all", "--identity", "/nonexistent/key.txt"])
        .failure();
    assert!(
        out.stderr.contains("identity file /nonexistent/key.txt"),
        "{}",
        out.all()
    );
    assert!(!out.stdout.contains("FAILED"), "{}", out.all());
    assert_eq!(
        sandbox.runs()[0]["verify_result"],
        "ok (stored bytes only: encrypted, not decrypted)"
    );
    // Random bytes with a manifest and a history row to match: not an age
    // file, and verify says so even without the identity.
    let artifact = sandbox.artifact_path(&runs[0]);
    fs::write(&artifact, vec![0x5a; 605]).expect("write");
    let sha = sha256_file(&artifact);
    let manifest_path = format!("{}.manifest.json", artifact.display());
    let mut manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&manifest_path).expect("manifest")).expect("json");
    manifest["sha256"] = sha.clone().into();
    manifest["size_bytes"] = 605.into();
    fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");
    sh(&format!(
        "sqlite3 '{}' \"UPDATE backup_runs SET sha256 = '{sha}', size_bytes = 605 WHERE id = {}\"",
        sandbox.path().join("history.db").display(),
        runs[0]["id"]
    ));
    let out = sandbox.cli(&["verify", "--latest"]).failure();
    assert!(out.stdout.contains("age header"), "{}", out.stdout);
}

#[test]
fn a_forged_artifact_that_history_does_not_know_is_never_restored() {
    let sandbox = Sandbox::new();
    let (key, public) = keygen(&sandbox, "key.txt");
    let db = sandbox.sample_db("app.sqlite3");
    sandbox.config(&format!(
        "[encryption]\nrecipients = [\"{public}\"]\n\
         [database_backup]\ndatabases = [{{ name = \"app\", url = \"sqlite://app.sqlite3\" }}]\n"
    ));
    let run = sandbox
        .cli(&["backup", "database", "--json"])
        .success()
        .json()[0]
        .clone();
    // Anyone can encrypt to the public key in the manifest: a forged
    // database, with a manifest that matches it.
    let artifact = sandbox.artifact_path(&run);
    let evil = sandbox.path().join("evil.sqlite3");
    sh(&format!(
        "sqlite3 '{}' 'CREATE TABLE pwned(x)'",
        evil.display()
    ));
    sh(&format!(
        "zstd -q -c '{}' | age -r {public} > '{}'",
        evil.display(),
        artifact.display()
    ));
    let manifest_path = format!("{}.manifest.json", artifact.display());
    let mut manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&manifest_path).expect("manifest")).expect("json");
    manifest["sha256"] = sha256_file(&artifact).into();
    manifest["size_bytes"] = fs::metadata(&artifact).expect("stat").len().into();
    fs::write(&manifest_path, serde_json::to_vec(&manifest).expect("json")).expect("write");

    let before = sha256_file(&db);
    let key_arg = key.to_string_lossy().into_owned();
    let run_id = run["id"].to_string();
    for pick in [&["--run", run_id.as_str()][..], &["--latest"][..]] {
        let mut args = vec![
            "restore",
            "database",
            "--target",
            "app",
            "--yes",
            "--identity",
            &key_arg,
        ];
        args.extend_from_slice(pick);
        let out = sandbox.cli(&args).failure();
        assert!(out.stderr.contains("disagrees with run"), "{}", out.all());
    }
    assert_eq!(sha256_file(&db), before, "the database was not touched");
}

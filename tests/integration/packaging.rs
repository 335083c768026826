//! What an operator installs beside the binaries: the shell completions, the
//! manual pages and the systemd unit.

use std::{fs, process::Command};

use crate::support::*;

/// The script `backup-cli completions bash` prints loads in bash and
/// completes a subcommand and an option the way a user's Tab would.
#[test]
fn the_bash_completion_loads_and_completes_subcommands_and_options() {
    let sandbox = Sandbox::new();
    let script = sandbox.path().join("backup-cli.bash");
    let out = sandbox.cli(&["completions", "bash"]).success();
    fs::write(&script, &out.stdout).expect("write the script");
    // What bash's programmable completion sets before it calls the function
    // `complete -p backup-cli` names.
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let probe = format!(
            "set -e; source '{script}'; fn=$(complete -p backup-cli | sed -E 's/.*-F ([^ ]+) .*/\\1/'); \
             COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
             \"$fn\" backup-cli '{last}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script = script.display(),
            words = words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            cword = words.len() - 1,
            last = words[words.len() - 1],
            prev = words[words.len() - 2],
        );
        sh(&probe).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete("backup-cli res"), ["restore"]);
    let restore = complete("backup-cli restore ");
    assert!(
        restore.contains(&"database".to_string()) && restore.contains(&"media".to_string()),
        "{restore:?}"
    );
    let options = complete("backup-cli verify --");
    assert!(options.contains(&"--identity".to_string()), "{options:?}");

    for shell in ["zsh", "fish"] {
        let out = sandbox.cli(&["completions", shell]).success();
        assert!(out.stdout.contains("backup-cli"), "{shell}: {}", out.stdout);
    }
    let bad = sandbox.cli(&["completions", "tcsh"]).failure();
    assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
}

/// `backup-cli man DIR` writes a page per command that `man` renders, and
/// the worker prints its own.
#[test]
fn manual_pages_are_written_for_every_command_and_render() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("share/man/man1");
    let out = sandbox
        .cli(&["man", dir.to_str().expect("utf-8")])
        .success();
    assert!(out.stdout.contains("manual page(s)"), "{}", out.stdout);
    // The directories it created are readable by every user too.
    for created in [
        dir.as_path(),
        dir.parent().expect("man"),
        dir.parent().unwrap().parent().unwrap(),
    ] {
        let mode = mode(created);
        assert_eq!(mode, 0o755, "{} has mode {mode:o}", created.display());
    }
    for page in [
        "backup-cli.1",
        "backup-cli-backup.1",
        "backup-cli-restore.1",
        "backup-cli-restore-database.1",
        "backup-cli-verify.1",
        "backup-cli-completions.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} was not written");
        // Readable by every user (the CLI's own umask is 0077).
        let mode = mode(&dir.join(page));
        assert_eq!(mode, 0o644, "{page} has mode {mode:o}");
    }
    let worker = Command::new(worker_path())
        .arg("--man-page")
        .output()
        .expect("backup-worker --man-page");
    assert!(worker.status.success());
    fs::write(dir.join("backup-worker.1"), &worker.stdout).expect("write");

    // man renders them (as `man backup-cli-restore-database` would).
    for (page, expect) in [
        ("backup-cli-restore-database.1", "--identity"),
        ("backup-worker.1", "--log-format"),
    ] {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(dir.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man");
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(rendered.status.success(), "man -l {page}: {rendered:?}");
        assert!(
            text.contains(expect),
            "{page} rendered without {expect}:\n{text}"
        );
    }
}

/// `systemd-analyze verify` accepts deploy/backup-worker.service, with the
/// worker installed where its ExecStart says, and its hardening keeps the
/// exposure `systemd-analyze security` reports low.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let sandbox = Sandbox::new();
    let root = sandbox.path().join("root");
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/backup-worker.service"
    );
    let text = fs::read_to_string(unit).expect("the unit");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|l| l.split_whitespace().next())
        .expect("ExecStart");
    let bin = root.join(exec.trim_start_matches('/'));
    fs::create_dir_all(bin.parent().expect("bin dir")).expect("bin dir");
    fs::copy(worker_path(), &bin).expect("install the worker");
    let units = root.join("etc/systemd/system");
    fs::create_dir_all(&units).expect("unit dir");
    fs::write(units.join("backup-worker.service"), &text).expect("install the unit");

    let analyze = |args: &[&str]| {
        Command::new("systemd-analyze")
            .args(args)
            .arg(format!("--root={}", root.display()))
            .arg("/etc/systemd/system/backup-worker.service")
            .output()
            .expect("systemd-analyze is installed (.ci/setup installs systemd)")
    };
    // Unknown keys and bad values only warn: stderr must be empty too.
    let verify = analyze(&["verify", "--man=no", "--recursive-errors=no"]);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Exposure on systemd's 0-10 scale; 1.7 today ("OK"), 8.6 before the
    // hardening options.
    let security = analyze(&["security", "--offline=true", "--threshold=20"]);
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{}{}",
        String::from_utf8_lossy(&security.stdout),
        String::from_utf8_lossy(&security.stderr)
    );
}

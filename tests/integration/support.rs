//! Test support: the real binary, private directories, throwaway databases on
//! the real PostgreSQL and MariaDB, and a real S3-protocol server.
//!
//! A service that is not running fails the test that needs it, loudly.

use std::{
    fs,
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432";
pub const MYSQL_HOST: &str = "127.0.0.1";

/// The `backup-cli` binary of this build, built from the current sources.
pub fn cli_path() -> PathBuf {
    binaries().join("backup-cli")
}

/// The `backup-worker` binary of this build.
pub fn worker_path() -> PathBuf {
    binaries().join("backup-worker")
}

/// Builds both binaries once per test process and returns their directory.
///
/// `cargo test` does not rebuild another package's binary, so a test run
/// after an edit would drive a stale one; build them (a no-op when they are
/// up to date; cargo has released its lock by the time tests run).
fn binaries() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "backup-cli",
                "-p",
                "backup-worker",
            ]);
            if !cfg!(debug_assertions) {
                cargo.arg("--release");
            }
            let status = cargo
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(
                status.success(),
                "building backup-cli and backup-worker failed"
            );
            // target/debug/deps/integration-HASH -> target/debug/
            let exe = std::env::current_exe().expect("test binary path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf();
            for bin in ["backup-cli", "backup-worker"] {
                assert!(
                    dir.join(bin).is_file(),
                    "{bin} is missing after cargo build"
                );
            }
            dir
        })
        .clone()
}

/// The result of running the CLI.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn failure(self) -> Self {
        assert_ne!(
            self.code, 0,
            "expected failure\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A private directory holding one test's config, history and storage.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("backup-test-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn storage(&self) -> PathBuf {
        self.path().join("storage")
    }

    /// Writes `backup.toml`: `extra` (top-level keys and sections other than
    /// `[history]` and `[storage]`), then local history and storage.
    pub fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "{extra}\n\n[history]\nurl = \"sqlite://history.db\"\n\n[storage]\nurl = \"file://storage\"\n"
        );
        self.raw_config(&text)
    }

    pub fn raw_config(&self, text: &str) -> PathBuf {
        let path = self.path().join("backup.toml");
        fs::write(&path, text).expect("write config");
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cli_path());
        cmd.arg("--config")
            .arg(self.path().join("backup.toml"))
            .args(args);
        cmd.env_remove("BACKUP_CONFIG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars() {
            if key.starts_with("BACKUP__") || key.starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Runs the CLI on a pseudo-terminal (util-linux `script`) and returns
    /// what the terminal received, stdout and stderr together.
    pub fn cli_on_tty(&self, args: &[&str], no_color: bool) -> Run {
        let line = format!(
            "'{}' --config '{}' {}",
            cli_path().display(),
            self.path().join("backup.toml").display(),
            args.join(" ")
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qefc", &line, "/dev/null"])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        cmd.stdin(Stdio::null())
            .output()
            .expect("run script")
            .into()
    }

    pub fn cli(&self, args: &[&str]) -> Run {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run backup-cli")
            .into()
    }

    /// Copies the sample SQLite database into the sandbox as `name`; returns
    /// its path.
    pub fn sample_db(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        fs::copy(sample_db(), &path).expect("copy the sample database");
        path
    }

    /// Where a run's artifact lies in the sandbox's local storage.
    pub fn artifact_path(&self, run: &Value) -> PathBuf {
        self.storage().join(
            run["artifact"]
                .as_str()
                .expect("the run has an artifact key"),
        )
    }

    /// Every run in history, newest first, as JSON objects.
    pub fn runs(&self) -> Vec<Value> {
        let out = self
            .cli(&["runs", "list", "--json", "--limit", "1000"])
            .success();
        out.json().as_array().expect("array").clone()
    }

    /// Files under storage (relative paths), `.partial/` included.
    pub fn stored_files(&self) -> Vec<String> {
        let root = self.storage();
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(
                        path.strip_prefix(&root)
                            .expect("under root")
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        out.sort();
        out
    }
}

/// The sample SQLite database shipped in `examples/`.
pub fn sample_db() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sample.sqlite3")
}

pub fn sha256_file(path: &Path) -> String {
    let mut hasher = Sha256::new();
    let mut file = fs::File::open(path).expect("open");
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// Runs a shell pipeline (standard tools only) and returns stdout; panics on failure.
#[track_caller]
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "`{script}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A throwaway PostgreSQL database, dropped with the value.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub fn create() -> Self {
        let name = unique("bt");
        sh(&format!(
            "psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE {name}'"
        ));
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("{PG_URL}/{}", self.name)
    }

    /// Runs SQL in this database; returns unaligned tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        psql_in(&self.name, sql)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

pub fn psql_in(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throwaway MariaDB database, dropped with the value.
pub struct MyDb {
    pub name: String,
}

impl MyDb {
    pub fn create() -> Self {
        let name = unique("bt");
        mysql_exec(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"));
        Self { name }
    }

    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args([
                "-uroot",
                "-h",
                MYSQL_HOST,
                "--batch",
                "--skip-column-names",
                "--default-character-set=utf8mb4",
                &self.name,
                "-e",
                sql,
            ])
            .output()
            .expect("mariadb");
        assert!(
            out.status.success(),
            "mariadb failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h", MYSQL_HOST, "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .output();
    }
}

pub fn mysql_exec(sql: &str) {
    let out = Command::new("mariadb")
        .args(["-uroot", "-h", MYSQL_HOST, "-e", sql])
        .output()
        .expect("mariadb");
    assert!(
        out.status.success(),
        "mariadb failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The S3-protocol server (s3s-fs) shared by the tests of this process.
pub struct S3 {
    pub endpoint: String,
    pub root: PathBuf,
}

pub const S3_ACCESS_KEY: &str = "backup-test-access";
pub const S3_SECRET_KEY: &str = "backup-test-secret-Zq9";

pub fn s3() -> &'static S3 {
    static SERVER: OnceLock<S3> = OnceLock::new();
    SERVER.get_or_init(|| {
        let root = std::env::temp_dir().join(unique("s3s-root"));
        fs::create_dir_all(&root).expect("s3 root");
        let port = closed_port();
        let bin = which("s3s-fs").unwrap_or_else(|| {
            panic!("s3s-fs is not installed: run `cargo install s3s-fs@0.14.1 --features binary --locked` (.ci/setup does)")
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let root_arg = root.clone();
        // The server lives on a thread that never ends, so the parent-death
        // signal fires only when the whole test process exits.
        std::thread::spawn(move || {
            let mut cmd = Command::new(bin);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(&root_arg)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            die_with_parent(&mut cmd);
            let child = cmd.spawn().expect("start s3s-fs");
            tx.send(()).expect("signal");
            let _keep = child;
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("s3s-fs started");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3 { endpoint: format!("http://127.0.0.1:{port}"), root }
    })
}

impl S3 {
    /// A fresh bucket (s3s-fs keeps buckets as directories).
    pub fn bucket(&self) -> String {
        let name = unique("bucket").replace('_', "-");
        fs::create_dir_all(self.root.join(&name)).expect("bucket dir");
        name
    }
}

#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// File mode bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The one run in `runs`, asserting there is exactly one.
#[track_caller]
pub fn only(runs: &[Value]) -> &Value {
    assert_eq!(runs.len(), 1, "expected one run, got {runs:#?}");
    &runs[0]
}

/// Asserts `secret` appears nowhere in the text.
#[track_caller]
pub fn assert_no_secret(text: &str, secret: &str) {
    assert!(
        !text.contains(secret),
        "secret {secret:?} leaked into:\n{text}"
    );
}

//! Test support for the worker: real `backup-worker` processes, a private
//! Redis namespace per test (or a private Redis server), HTTP probes, and
//! polling with a deadline.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::*;

pub const REDIS: &str = "redis://127.0.0.1:6379";

/// Polls `check` every 100 ms until it returns `Some`, failing the test
/// with `what` (and the last observation) after `timeout`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shared Redis on 6379 must be up; a private namespace per test keeps
/// tests apart, and its keys are deleted afterwards.
pub struct Namespace {
    pub name: String,
    pub url: String,
}

impl Namespace {
    pub fn new() -> Self {
        Self::on(REDIS)
    }

    pub fn on(url: &str) -> Self {
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("port");
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "Redis is not running on 127.0.0.1:{port}; start it (.ci/setup does)"
        );
        Self {
            name: unique("bt"),
            url: url.to_string(),
        }
    }

    /// The `[queue]` section for a config.
    pub fn section(&self) -> String {
        format!(
            "[queue]\nurl = \"{}\"\nnamespace = \"{}\"\n",
            self.url, self.name
        )
    }

    /// Waits until a worker of `queue` has registered in Redis: until then
    /// `trigger --wait` says no worker is alive.
    #[track_caller]
    pub fn wait_for_worker(&self, queue: &str) {
        let key = format!("{}:{queue}:workers", self.name);
        wait_for(
            Duration::from_secs(90),
            "a queue worker to register",
            || {
                let count = self.redis(&["ZCARD", &key]);
                (count.trim().parse::<u32>().unwrap_or(0) > 0).then_some(())
            },
        );
    }

    pub fn redis(&self, args: &[&str]) -> String {
        let port = self.url.rsplit(':').next().expect("port");
        sh(&format!("redis-cli -p {port} {}", args.join(" ")))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let port = self.url.rsplit(':').next().unwrap_or("6379").to_string();
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "redis-cli -p {port} --scan --pattern '{}:*' | xargs -r -n 100 redis-cli -p {port} DEL",
                self.name
            ))
            .output();
    }
}

/// A `backup-worker` process of a sandbox; SIGKILLed if still running when
/// dropped (and when the test process dies).
pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
}

impl Worker {
    pub fn start(sandbox: &Sandbox, label: &str) -> Self {
        Self::start_with(sandbox, label, &[])
    }

    /// Starts a worker with these `BACKUP__` overrides in its environment.
    pub fn start_with(sandbox: &Sandbox, label: &str, env: &[(&str, &str)]) -> Self {
        let log = sandbox.path().join(format!("worker-{label}.log"));
        let file = fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(worker_path());
        cmd.arg("--config")
            .arg(sandbox.path().join("backup.toml"))
            .env_remove("BACKUP_CONFIG")
            .env("RUST_LOG", "info,backup_core=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        for (key, _) in std::env::vars() {
            if key.starts_with("BACKUP__") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start backup-worker");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:pid` as recorded in history rows.
    pub fn id(&self) -> String {
        format!("{}:{}", sh("hostname").trim(), self.pid())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        #[allow(unsafe_code)]
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for the process to exit; fails the test after `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_for(timeout, "backup-worker to exit", || {
            child.try_wait().expect("try_wait")
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        }
    }
}

/// `GET path` on 127.0.0.1:`port`: (status code, body), or `None` when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// What a worker's `/healthz` says its cron side works from: the loaded
/// schedules (`null` before the first load) and how far it has fired them.
pub fn scheduler_state(port: u16) -> Option<Value> {
    let (_, body) = http_get(port, "/healthz")?;
    let health: Value = serde_json::from_str(&body).ok()?;
    Some(health["scheduler"].clone())
}

/// The names of the schedules a worker's cron side has loaded, once it has.
pub fn loaded_schedules(port: u16) -> Option<Vec<String>> {
    let state = scheduler_state(port)?;
    let loaded = state["schedules"].as_array()?;
    Some(
        loaded
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s["name"].as_str().unwrap_or("?"),
                    s["cron"].as_str().unwrap_or("?")
                )
            })
            .collect(),
    )
}

/// Waits until a worker's cron side has dispatched every fire up to `t`.
#[track_caller]
pub fn wait_fired_past(port: u16, t: chrono::DateTime<chrono::Utc>) -> Value {
    wait_for(
        Duration::from_secs(90),
        "the cron side to look past the time",
        || {
            let state = scheduler_state(port)?;
            let until: chrono::DateTime<chrono::Utc> =
                state["checked_until"].as_str()?.parse().ok()?;
            (until > t).then_some(state)
        },
    )
}

/// Runs of the sandbox, oldest first.
pub fn runs_oldest_first(sandbox: &Sandbox) -> Vec<Value> {
    let mut runs = sandbox.runs();
    runs.reverse();
    runs
}

/// A private redis-server on its own port, for tests that stop it.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let mut redis = Self {
            port: closed_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("start redis-server (is it installed?)"));
        let port = self.port;
        wait_for(
            Duration::from_secs(10),
            "private redis-server to listen",
            || TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

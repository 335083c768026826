//! Helpers of the dashboard tests: a raw HTTP client (so a test sees the
//! exact status, headers and body), a worker serving the dashboard with
//! users and a token, and a headless Chromium driven over WebDriver.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    support::{Sandbox, closed_port, die_with_parent, which},
    worker_support::{Worker, http_get, wait_for},
};

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie` value.
    pub fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// `GET path` with these headers: the status and the body's bytes (read
/// to the end: the server closes the connection).
pub fn download(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    let mut head = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    let status = String::from_utf8_lossy(&raw[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, raw[split + 4..].to_vec())
}

/// `method path` on 127.0.0.1:`port` with these headers and body.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body.as_bytes()).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The Argon2id hash `backup-cli dashboard hash-password` prints for
/// `secret`.
pub fn hash(sandbox: &Sandbox, secret: &str) -> String {
    let mut child = sandbox
        .command(&["dashboard", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{secret}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "hash-password failed");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// Planted secrets: none may appear on any page or in any response.
pub const SECRET_KEY: &str = "planted-session-key-0123456789abcdef-xyz";
pub const ADMIN_PASSWORD: &str = "planted-admin-Passw0rd";
pub const VIEWER_PASSWORD: &str = "planted-viewer-Passw0rd";
pub const TOKEN: &str = "planted-token-4a1f0c9e8d7b6a5f4e3d2c1b";
pub const VIEWER_TOKEN: &str = "planted-viewer-token-9e8d7c6b5a4f3e2d";

/// The `[dashboard]` section with users `admin` (operator) and `viewer`,
/// tokens `ci` (operator) and `monitor` (viewer).
pub fn dashboard_section(sandbox: &Sandbox, port: u16) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[dashboard]\nenabled = true\nsecret_key = \"{SECRET_KEY}\"\n\
         [[dashboard.users]]\nname = \"admin\"\npassword_hash = \"{}\"\nrole = \"operator\"\n\
         [[dashboard.users]]\nname = \"viewer\"\npassword_hash = \"{}\"\nrole = \"viewer\"\n\
         [[dashboard.tokens]]\nname = \"ci\"\ntoken_hash = \"{}\"\nrole = \"operator\"\n\
         [[dashboard.tokens]]\nname = \"monitor\"\ntoken_hash = \"{}\"\nrole = \"viewer\"\n",
        hash(sandbox, ADMIN_PASSWORD),
        hash(sandbox, VIEWER_PASSWORD),
        hash(sandbox, TOKEN),
        hash(sandbox, VIEWER_TOKEN),
    )
}

/// A free port for a worker's listener.
pub fn free_port() -> u16 {
    closed_port()
}

/// Starts a worker and waits until its listener answers.
pub fn start_worker(sandbox: &Sandbox, port: u16, label: &str) -> Worker {
    let worker = Worker::start(sandbox, label);
    wait_for(Duration::from_secs(30), "the dashboard to answer", || {
        http_get(port, "/healthz").map(|_| ())
    });
    worker
}

/// A headless Chromium under chromedriver, ended when dropped (Chromium
/// too: it runs on a profile of its own, whose processes are killed).
pub struct Browser {
    driver: Child,
    profile: tempfile::TempDir,
    pub client: fantoccini::Client,
    pub shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a Chromium session at 1280x900. Fails the
    /// test when they are not installed (`bash .ci/setup` installs them).
    pub async fn start() -> Self {
        let driver_path = which("chromedriver").unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed; install Debian's chromium and chromium-driver \
                 (bash .ci/setup does)"
            )
        });
        let port = free_port();
        let mut cmd = Command::new(driver_path);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let driver = cmd.spawn().expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        wait_for(Duration::from_secs(20), "chromedriver to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        let profile = tempfile::Builder::new()
            .prefix("backup-test-chromium-")
            .tempdir()
            .expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--hide-scrollbars", "--force-prefers-reduced-motion",
                         format!("--user-data-dir={}", profile.path().display())]
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session (is chromium installed?)");
        let shots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Self {
            driver,
            profile,
            client,
            shots,
        }
    }

    /// Saves screenshots of the current page at desktop and phone width.
    pub async fn shoot(&self, name: &str) {
        for (label, w, h) in [("desktop", 1280, 900), ("phone", 390, 844)] {
            self.client
                .set_window_size(w, h)
                .await
                .expect("window size");
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(self.shots.join(format!("{name}-{label}.png")), png)
                .expect("save screenshot");
        }
        self.client
            .set_window_size(1280, 900)
            .await
            .expect("window size");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = Command::new("pkill")
            .args(["-9", "-f"])
            .arg(format!("user-data-dir={}", self.profile.path().display()))
            .status();
    }
}

//! Real peers for notifications: an SMTP server (aiosmtpd, `tests/smtp_sink.py`)
//! with optional STARTTLS, implicit TLS and AUTH, certificates from a
//! private CA made with `openssl`, and an HTTP listener that records every
//! request (webhooks, dead-man's-switch pings).

use std::{
    collections::VecDeque,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use serde_json::Value;

use crate::support::{die_with_parent, unique};

/// Options of the SMTP server.
#[derive(Default, Clone)]
pub struct SmtpOptions {
    /// Offer STARTTLS with the test CA's server certificate.
    pub starttls: bool,
    /// Refuse mail until STARTTLS.
    pub require_starttls: bool,
    /// TLS from the first byte (smtps).
    pub implicit_tls: bool,
    /// `user:password` that must log in.
    pub auth: Option<String>,
    /// Offer AUTH without TLS.
    pub auth_without_tls: bool,
    /// Seconds before answering DATA.
    pub delay: f64,
    /// Answer 451 to the first N messages.
    pub refuse_first: u32,
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Envelope, session and parsed message (see `smtp_sink.py`).
    pub meta: Value,
    /// The bytes received after DATA.
    pub raw: String,
}

impl Mail {
    pub fn subject(&self) -> &str {
        self.meta["subject"].as_str().expect("subject")
    }

    /// The decoded text body, with `\n` line ends.
    pub fn body(&self) -> String {
        self.meta["body"]
            .as_str()
            .expect("body")
            .replace("\r\n", "\n")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.meta["headers"][name].as_str()
    }

    pub fn recipients(&self) -> Vec<String> {
        self.meta["rcpt_tos"]
            .as_array()
            .expect("rcpt_tos")
            .iter()
            .map(|v| v.as_str().expect("address").to_string())
            .collect()
    }
}

/// A running SMTP server, killed on drop.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    pub fn start(options: SmtpOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("smtp-sink-")
            .tempdir()
            .expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(dir.path());
        if options.starttls || options.implicit_tls {
            let certs = certs();
            cmd.arg("--cert").arg(&certs.server_cert);
            cmd.arg("--key").arg(&certs.server_key);
        }
        if options.implicit_tls {
            cmd.arg("--implicit-tls");
        }
        if options.require_starttls {
            cmd.arg("--require-starttls");
        }
        if let Some(auth) = &options.auth {
            cmd.args(["--auth", auth]);
        }
        if options.auth_without_tls {
            cmd.arg("--auth-without-tls");
        }
        cmd.args(["--delay", &options.delay.to_string()]);
        cmd.args(["--refuse-first", &options.refuse_first.to_string()]);
        // Its log (TLS handshakes refused on purpose, say) stays beside the mails.
        let log = fs::File::create(dir.path().join("sink.log")).expect("sink log");
        cmd.stdout(Stdio::piped()).stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sink's first line");
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                let log = fs::read_to_string(dir.path().join("sink.log")).unwrap_or_default();
                panic!(
                    "the SMTP sink did not start (is aiosmtpd installed? `pip install aiosmtpd==1.4.6`, \
                     .ci/setup does): {line:?}\n{log}"
                )
            });
        Self { port, dir, child }
    }

    /// Messages accepted so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .expect("read sink dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let meta = serde_json::from_str(&fs::read_to_string(&json).expect("read json"))
                    .expect("sink json");
                let raw = fs::read(json.with_extension("eml")).expect("read eml");
                Mail {
                    meta,
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                }
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA and a server certificate for 127.0.0.1 and localhost.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// The test CA, made once per test process with the `openssl` command.
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique("test-ca"));
        fs::create_dir_all(&dir).expect("ca dir");
        fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext file");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<&str>; 3] = [
            [
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "3",
                    "-subj",
                    "/CN=backup test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
            [
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
            vec![
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "3",
                "-extfile",
                "server.ext",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(&args)
                .current_dir(&dir)
                .output()
                .expect("run openssl (apt install openssl; .ci/setup does)");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Certs {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    })
}

/// One HTTP request received.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpRequest {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 listener on 127.0.0.1 recording every request. It answers
/// 200, or the statuses queued with [`HttpSink::respond_with`] first.
pub struct HttpSink {
    pub port: u16,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl HttpSink {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let (seen, queued) = (requests.clone(), statuses.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, queued) = (seen.clone(), queued.clone());
                std::thread::spawn(move || serve(stream, &seen, &queued));
            }
        });
        Self {
            port,
            requests,
            statuses,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers the next requests with these statuses, in order.
    pub fn respond_with(&self, statuses: &[u16]) {
        self.statuses
            .lock()
            .expect("statuses")
            .extend(statuses.iter().copied());
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().expect("requests").clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn at(&self, prefix: &str) -> Vec<HttpRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<HttpRequest>>, queued: &Mutex<VecDeque<u16>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let status = queued.lock().expect("statuses").pop_front().unwrap_or(200);
    seen.lock().expect("requests").push(HttpRequest {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

//! Storage servers for the storage tests, each started once per test
//! process on a free loopback port: an OpenSSH server (SFTP, key
//! authentication only) and Azurite (Azure Blob Storage).

use std::{
    fs,
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::support::*;

/// Starts `cmd` on a thread that never ends (so that the parent-death
/// signal fires only when the test process exits) and waits for `port`.
fn serve(name: &str, mut cmd: Command, port: u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    let label = name.to_string();
    std::thread::spawn(move || {
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {label}: {e}"));
        tx.send(()).expect("signal");
        let _keep = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("server started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{name} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An SSH server whose `root` account takes `key` only.
pub struct Sshd {
    pub port: u16,
    /// The client's private key (0600).
    pub key: PathBuf,
    /// Where tests put their storage directories (served as is).
    pub dir: PathBuf,
    /// A directory with an `ssh` that reads `known_hosts` above instead of
    /// `~/.ssh/known_hosts`: prepend it to PATH.
    pub bin: PathBuf,
    /// A short directory for ssh's control sockets (`XDG_STATE_HOME`).
    pub state: PathBuf,
}

pub fn sshd() -> &'static Sshd {
    static SERVER: OnceLock<Sshd> = OnceLock::new();
    SERVER.get_or_init(|| {
        let sshd = PathBuf::from("/usr/sbin/sshd");
        assert!(
            sshd.is_file() && which("ssh").is_some(),
            "openssh-server and openssh-client are not installed (.ci/setup installs them)"
        );
        // Short: ssh's control socket path must fit in 108 bytes.
        let dir = PathBuf::from(format!("/tmp/sshd-{}", &unique("x")[2..10]));
        fs::create_dir_all(&dir).expect("sshd dir");
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        for name in ["host", "client"] {
            sh(&format!(
                "ssh-keygen -q -t ed25519 -N '' -f '{}/{name}'",
                dir.display()
            ));
        }
        fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).expect("authorized_keys");
        let port = closed_port();
        fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host\nPidFile none\n\
                 AuthorizedKeysFile {d}/authorized_keys\nAuthenticationMethods publickey\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nMaxStartups 100\n\
                 MaxSessions 100\nLogLevel ERROR\nSubsystem sftp internal-sftp\n",
                d = dir.display()
            ),
        )
        .expect("sshd_config");
        let mut cmd = Command::new(&sshd);
        cmd.arg("-D")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        serve("sshd", cmd, port);
        let known_hosts = dir.join("known_hosts");
        let scanned = sh(&format!("ssh-keyscan -T 5 -p {port} 127.0.0.1 2>/dev/null"));
        assert!(scanned.contains("ssh-ed25519"), "ssh-keyscan: {scanned}");
        fs::write(&known_hosts, scanned).expect("known_hosts");
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).expect("bin");
        script(
            &bin.join("ssh"),
            &format!(
                "exec /usr/bin/ssh -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \"$@\"",
                known_hosts.display()
            ),
        );
        let state = dir.join("st");
        fs::create_dir_all(&state).expect("state");
        Sshd {
            port,
            key: dir.join("client"),
            dir,
            bin,
            state,
        }
    })
}

impl Sshd {
    /// A fresh, empty directory on the server; returns its path.
    pub fn directory(&self) -> PathBuf {
        let path = self.dir.join(unique("store"));
        fs::create_dir_all(&path).expect("store dir");
        path
    }

    /// The environment a process talking to this server needs.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PATH".into(),
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
            ("XDG_STATE_HOME".into(), self.state.display().to_string()),
        ]
    }
}

/// Azurite's blob service with the well-known development account.
pub struct Azurite {
    /// `http://127.0.0.1:PORT/devstoreaccount1`.
    pub endpoint: String,
}

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn azurite() -> &'static Azurite {
    static SERVER: OnceLock<Azurite> = OnceLock::new();
    SERVER.get_or_init(|| {
        let bin = which("azurite-blob").unwrap_or_else(|| {
            panic!(
                "azurite-blob is not installed: `npm install -g azurite@3.35.0` (.ci/setup does)"
            )
        });
        let dir = std::env::temp_dir().join(unique("azurite"));
        fs::create_dir_all(&dir).expect("azurite dir");
        let port = closed_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(&dir)
            .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        serve("azurite", cmd, port);
        Azurite {
            endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        }
    })
}

impl Azurite {
    /// A fresh container (created with a SharedKey-signed request).
    pub fn container(&self) -> String {
        let name = unique("c").replace('_', "-");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/azurite_container.py");
        sh(&format!("python3 '{script}' '{}' '{name}'", self.endpoint));
        name
    }
}

/// `rclone serve webdav` over a directory, with a login.
pub struct Dav {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The directory it serves.
    pub dir: PathBuf,
}

pub const DAV_USER: &str = "backup";
pub const DAV_PASSWORD: &str = "dav-Secret-93x";

pub fn webdav() -> &'static Dav {
    static SERVER: OnceLock<Dav> = OnceLock::new();
    SERVER.get_or_init(|| {
        let bin = which("rclone")
            .unwrap_or_else(|| panic!("rclone is not installed (.ci/setup installs it)"));
        let dir = std::env::temp_dir().join(unique("dav"));
        fs::create_dir_all(&dir).expect("dav dir");
        let port = closed_port();
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "webdav"])
            .arg(&dir)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--user", DAV_USER, "--pass", DAV_PASSWORD])
            .args([
                "--config",
                "/dev/null",
                "--dir-cache-time",
                "0s",
                "--poll-interval",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        serve("rclone serve webdav", cmd, port);
        Dav {
            endpoint: format!("127.0.0.1:{port}"),
            dir,
        }
    })
}

impl Dav {
    /// A fresh directory on the server: its name.
    pub fn directory(&self) -> String {
        let name = unique("store");
        fs::create_dir_all(self.dir.join(&name)).expect("store dir");
        name
    }
}

"""The `paths` section of bench/bench.py: peak memory (and time) of every
storage path, with and without encryption, at two database sizes 10x apart.

Each storage service runs here for real on a loopback port, the way the
integration tests start them: s3s-fs (S3), OpenSSH's sshd (SFTP, key login),
`rclone serve webdav` (WebDAV) and Azurite (Azure Blob). For each service,
plain and with age (an X25519 recipient), it backs up the large and the
small PostgreSQL database and restores both into a fresh database.

Standard library only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAV_USER = "bench"
DAV_PASSWORD = "bench-dav-Pw4"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
REPO = Path(__file__).resolve().parent.parent


def wait_port(name: str, port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: {name} did not start")
            time.sleep(0.05)


class Server:
    """A storage server process: its `[storage]` section and its extra env."""
    name: str
    proc: subprocess.Popen
    env: dict[str, str]

    def section(self, keep: str) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Sftp(Server):
    name = "SFTP (sshd)"

    def __init__(self, work: Path, b):
        # Short: ssh's control socket path must fit in 108 bytes.
        self.dir = Path(f"/tmp/bench-sshd-{os.getpid()}")
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "store").mkdir(parents=True)
        (self.dir / "st").mkdir()
        (self.dir / "bin").mkdir()
        Path("/run/sshd").mkdir(exist_ok=True)
        for key in ("host", "client"):
            b.sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / key)])
        shutil.copy(self.dir / "client.pub", self.dir / "authorized_keys")
        self.port = b.free_port()
        d = self.dir
        (d / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {d}/host\nPidFile none\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nAuthenticationMethods publickey\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n")
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(d / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("sshd", self.port, self.proc)
        scanned = b.sh(f"ssh-keyscan -T 5 -p {self.port} 127.0.0.1 2>/dev/null")
        (d / "known_hosts").write_text(scanned)
        # ssh reads this known_hosts, not ~/.ssh/known_hosts: nothing of the
        # bench is left in the operator's home.
        ssh = d / "bin" / "ssh"
        ssh.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -o UserKnownHostsFile={d}/known_hosts '
                       f'-o GlobalKnownHostsFile=/dev/null "$@"\n')
        ssh.chmod(0o755)
        self.env = {"PATH": f"{d}/bin:{os.environ.get('PATH', '')}", "XDG_STATE_HOME": str(d / "st")}

    def section(self, keep: str) -> str:
        return (f'[storage]\nurl = "sftp://root@127.0.0.1:{self.port}{self.dir}/store/{keep}"\n'
                f'ssh_key = "{self.dir}/client"\nkeep = 2\n')

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class WebDav(Server):
    name = "WebDAV (rclone)"

    def __init__(self, work: Path, b):
        self.dir = work / "dav"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.port = b.free_port()
        self.proc = subprocess.Popen(
            ["rclone", "serve", "webdav", str(self.dir), "--addr", f"127.0.0.1:{self.port}",
             "--user", DAV_USER, "--pass", DAV_PASSWORD, "--config", "/dev/null",
             "--dir-cache-time", "0s", "--poll-interval", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("rclone serve webdav", self.port, self.proc)
        self.env = {"BACKUP__STORAGE__PASSWORD": DAV_PASSWORD}

    def section(self, keep: str) -> str:
        (self.dir / keep).mkdir(exist_ok=True)
        return (f'[storage]\nurl = "webdav+http://127.0.0.1:{self.port}/{keep}"\n'
                f'username = "{DAV_USER}"\nkeep = 2\n')


class Azure(Server):
    name = "Azure Blob (Azurite)"

    def __init__(self, work: Path, b):
        exe = shutil.which("azurite-blob")
        if not exe:
            raise SystemExit("bench: azurite-blob is missing (bash .ci/setup installs it)")
        self.dir = work / "azurite"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.port = b.free_port()
        self.proc = subprocess.Popen(
            [exe, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self.dir),
             "--silent", "--skipApiVersionCheck", "--disableTelemetry"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("azurite", self.port, self.proc)
        self.endpoint = f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"
        self.containers: set[str] = set()
        self.env = {"BACKUP__STORAGE__ACCOUNT_KEY": AZURITE_KEY}

    def section(self, keep: str) -> str:
        container = keep.replace("_", "-")
        if container not in self.containers:
            subprocess.run(["python3", str(REPO / "tests" / "azurite_container.py"), self.endpoint,
                            container], check=True, stdout=subprocess.DEVNULL)
            self.containers.add(container)
        return (f'[storage]\nurl = "azblob://{container}/backups"\nendpoint = "{self.endpoint}"\n'
                f'account_name = "{AZURITE_ACCOUNT}"\nkeep = 2\n')


class S3(Server):
    name = "S3 (s3s-fs)"

    def __init__(self, work: Path, b):
        self.server = b.S3Server(work / "s3-paths")
        self.proc = self.server.proc
        self.env = {"BACKUP__STORAGE__SECRET_ACCESS_KEY": b.S3_SECRET}

    def section(self, keep: str) -> str:
        return self.server.section().replace("s3://bench/artifacts", f"s3://bench/{keep}")


class Local(Server):
    name = "local disk"

    def __init__(self, work: Path, b):
        self.dir = work / "store-paths"
        self.proc = None  # type: ignore[assignment]
        self.env = {}

    def section(self, keep: str) -> str:
        return f'[storage]\nurl = "file://{self.dir}/{keep}"\nkeep = 2\n'

    def stop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


SERVICES = [Local, S3, Sftp, WebDav, Azure]


@dataclass
class Row:
    service: str
    encrypted: bool
    backup_large: object  # Side
    backup_small: object
    restore_large: object
    restore_small: object


def run(opts, data, b) -> list[Row]:
    """Every path: one run each (peak RSS is steady from run to run)."""
    key = opts.work / "age-key.txt"
    if not key.exists():
        b.sh(["age-keygen", "-o", str(key)])
    public = b.sh(["age-keygen", "-y", str(key)]).strip()
    fresh = f"{opts.prefix}_restore"
    rows: list[Row] = []
    for service in SERVICES:
        b.log(f"paths: starting {service.__name__}")
        server = service(opts.work, b)
        try:
            for encrypted in (False, True):
                keep = f"paths-{'age' if encrypted else 'plain'}"
                body = b.base_config(opts, data, server.section(keep))
                if encrypted:
                    body += f'\n[encryption]\nrecipients = ["{public}"]\nidentity_file = "{key}"\n'
                config = b.write_config(opts.work / f"paths-{service.__name__.lower()}-{keep}.toml", body)
                label = f"{server.name}{', age' if encrypted else ''}"

                def backup(target: str):
                    return b.repeat(b.ours(opts, config, f"backup {target} → {label}",
                                           ["backup", "database", "--target", target], server.env),
                                    opts, 1)

                def restore(target: str):
                    env = dict(server.env, BACKUP_RESTORE_INTO=f"{b.PG}/{fresh}")
                    return b.repeat(b.ours(opts, config, f"restore {target} ← {label}",
                                           ["restore", "database", "--target", target, "--latest", "--yes"],
                                           env),
                                    opts, 1, prepare=lambda: b.pg_create(fresh))

                row = Row(server.name, encrypted, backup("pg"), backup("pg-small"),
                          restore("pg"), restore("pg-small"))
                b.log(f"  {label}: backup {row.backup_large.times[0]:.2f} s, "
                      f"restore {row.restore_large.times[0]:.2f} s")
                rows.append(row)
        finally:
            server.stop()
    b.pg_drop(fresh)
    return rows


def report(rows: list[Row], b, w) -> None:
    """The table of every path, with the memory targets."""
    w("### Memory of every storage path")
    w("")
    w("One run of each: `backup-cli backup database` of the large and the small PostgreSQL "
      "database, and `restore database` of each into a fresh database, on every storage service "
      "(each a real server on loopback), without and with age encryption (one X25519 recipient). "
      "Peak RSS of `backup-cli` alone (the dump tools and `ssh` are their own processes).")
    w("")
    w("| storage | age | backup (large) | backup peak: large / small | restore (large) "
      "| restore peak: large / small | targets |")
    w("|---|---|---|---|---|---|---|")
    worst_backup = worst_restore = 0
    for r in rows:
        bl, bs = r.backup_large.peaks().get("backup-cli", 0), r.backup_small.peaks().get("backup-cli", 0)
        rl, rs = r.restore_large.peaks().get("backup-cli", 0), r.restore_small.peaks().get("backup-cli", 0)
        worst_backup, worst_restore = max(worst_backup, bl, bs), max(worst_restore, rl, rs)
        ok = (max(bl, bs) / 1024 <= b.TARGET_BACKUP_RSS_MB
              and max(rl, rs) / 1024 <= b.TARGET_RESTORE_RSS_MB
              and abs(bl - bs) / max(bl, bs, 1) <= b.TARGET_RSS_SPREAD
              and abs(rl - rs) / max(rl, rs, 1) <= b.TARGET_RSS_SPREAD)
        w(f"| {r.service} | {'yes' if r.encrypted else 'no'} | {r.backup_large.times[0]:.2f} s "
          f"| {b.mb(bl)} / {b.mb(bs)} | {r.restore_large.times[0]:.2f} s | {b.mb(rl)} / {b.mb(rs)} "
          f"| {b.mark(ok)} |")
    w("")
    w(f"Highest peak in any path: backup {b.mb(worst_backup)} "
      f"(target ≤ {b.TARGET_BACKUP_RSS_MB} MB: {b.mark(worst_backup / 1024 <= b.TARGET_BACKUP_RSS_MB)}), "
      f"restore {b.mb(worst_restore)} "
      f"(target ≤ {b.TARGET_RESTORE_RSS_MB} MB: {b.mark(worst_restore / 1024 <= b.TARGET_RESTORE_RSS_MB)}); "
      f"each path's large and small peaks within {b.TARGET_RSS_SPREAD:.0%} of each other is the "
      "\"flat\" target.")
    w("")

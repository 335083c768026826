#!/usr/bin/env python3
"""Benchmarks: backup-cli and backup-worker side by side with the raw tools.

Run through `bench/run.sh`, which checks the machine and builds the release
binaries. This script creates the data (PostgreSQL via pgbench plus a
text/jsonb/bytea table, MariaDB of the same shape, a media tree), runs each
pair alternately after a warm-up, samples the peak RSS of every process of
each command, measures an idle worker and the fire-to-start latency of three
replicas, and writes the figures into BENCHMARKS.md (between the
`figures` markers, so the hand-written findings around them stay).

Nothing here asserts a time: a target that is missed is marked as missed.
Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard  # noqa: E402  (bench/dashboard.py: the dashboard section)
import paths  # noqa: E402  (bench/paths.py: every storage path's memory)

PG = "postgres://postgres@127.0.0.1:5432"
MY = ["--host=127.0.0.1", "--port=3306", "--user=root"]
REDIS = "redis://127.0.0.1:6379"
S3_ACCESS = "bench-access"
S3_SECRET = "bench-secret-Kx7"
MARK_START = "<!-- figures:start (written by bench/run.sh; edits here are overwritten) -->"
MARK_END = "<!-- figures:end -->"

# Targets of the benchmark issue.
TARGET_RATIO = 1.10
TARGET_BACKUP_RSS_MB = 48
TARGET_RESTORE_RSS_MB = 32
TARGET_RSS_SPREAD = 0.10
TARGET_IDLE_RSS_MB = 30
TARGET_IDLE_CPU = 1.0
TARGET_LATENCY_P99 = 1.0
# The fixed cost of a run: seconds over the raw pipeline on an empty database.
TARGET_OVERHEAD = 0.050


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str] | str, *, env: dict | None = None, input: str | None = None,
       check: bool = True) -> str:
    """Runs a set-up command (not measured) and returns its stdout."""
    shell = isinstance(cmd, str)
    proc = subprocess.run(cmd, shell=shell, executable="/bin/bash" if shell else None,
                          env=env, input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        shown = cmd if shell else shlex.join(cmd)
        raise SystemExit(f"bench: `{shown}` failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout


def psql(db: str, sql: str) -> str:
    return sh(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", f"{PG}/{db}"],
              input=sql).strip()


def mariadb(sql: str, db: str | None = None) -> str:
    args = ["mariadb", *MY, "--batch", "--skip-column-names"]
    if db:
        args.append(db)
    return sh(args, input=sql).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def tree_size(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            p = os.path.join(root, n)
            if not os.path.islink(p):
                files += 1
                size += os.path.getsize(p)
    return files, size


# ---------------------------------------------------------------------------
# Measuring one command: wall time and the peak RSS of each of its processes.
# ---------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids.extend(int(k) for k in f.read().split())
        except OSError:
            pass
    return kids


def _status(pid: int) -> tuple[str | None, int | None]:
    """Name and VmHWM (peak RSS, kB) of a process."""
    name = hwm = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Name:"):
                    name = line.split(None, 1)[1].strip()
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                    break
    except OSError:
        pass
    return name, hwm


class Sampler(threading.Thread):
    """Polls a process tree every 10 ms and keeps each process name's peak
    VmHWM. VmHWM is the kernel's own high-water mark, so a sample misses at
    most what a process grows in its last 10 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peaks: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            stack = [self.pid]
            while stack:
                p = stack.pop()
                name, hwm = _status(p)
                if name and hwm:
                    self.peaks[name] = max(self.peaks.get(name, 0), hwm)
                stack.extend(_children(p))
            self.done.wait(0.01)


@dataclass
class Cmd:
    label: str
    argv: list[str] | str
    env: dict[str, str] | None = None

    def popen_args(self) -> tuple[list[str], dict]:
        argv = ["/bin/bash", "-o", "pipefail", "-c", self.argv] if isinstance(self.argv, str) else self.argv
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        return argv, env


@dataclass
class Sample:
    seconds: float
    peaks: dict[str, int]


def measure(cmd: Cmd, logs: Path) -> Sample:
    argv, env = cmd.popen_args()
    os.sync()  # no run pays for the previous one's dirty pages
    out = logs / "last.out"
    err = logs / "last.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        sampler = Sampler(proc.pid)
        sampler.start()
        proc.wait()
        seconds = time.perf_counter() - start
        sampler.done.set()
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"bench: {cmd.label} failed ({proc.returncode}):\n{err.read_text()[-3000:]}")
    return Sample(seconds, sampler.peaks)


@dataclass
class Side:
    cmd: Cmd
    samples: list[Sample] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [s.seconds for s in self.samples]

    def peaks(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            for k, v in s.peaks.items():
                out[k] = max(out.get(k, 0), v)
        return out


@dataclass
class Pair:
    title: str
    ours: Side
    raw: Side
    target: bool = True  # held to the 1.10x target
    plain: Side | None = None  # the raw pipeline without its fsync, for reference
    overhead: bool = False  # held to TARGET_OVERHEAD seconds over raw instead

    def differences(self) -> list[float]:
        return [a - b for a, b in zip(self.ours.times, self.raw.times)]

    def ratios(self, other: Side | None = None) -> list[float]:
        other = other or self.raw
        return [a / b for a, b in zip(self.ours.times, other.times)]

    def ratio(self, other: Side | None = None) -> float:
        return statistics.median(self.ratios(other))


def run_pair(title: str, ours: Cmd, raw: Cmd, opts, *, prepare=None, check=None,
             target: bool = True, plain: Cmd | None = None) -> Pair:
    """Runs `ours`, `raw` (and `plain`) in turn, rotating the order each
    round (A B C, B C A, ...), after a warm-up. `prepare(side)` runs before
    and `check(side)` after every run, untimed."""
    pair = Pair(title, Side(ours), Side(raw), target, Side(plain) if plain else None)
    log(f"{title}: {opts.warmup} warm-up + {opts.runs} measured run(s) each")
    sides = [("ours", pair.ours), ("raw", pair.raw)] + ([("raw", pair.plain)] if pair.plain else [])
    for i in range(opts.warmup + opts.runs):
        order = sides[i % len(sides):] + sides[:i % len(sides)]
        for which, side in order:
            if prepare:
                prepare(which)
            sample = measure(side.cmd, opts.work)
            if check:
                check(which)
            if i >= opts.warmup:
                side.samples.append(sample)
            log(f"  {side.cmd.label}: {sample.seconds:.2f} s")
    return pair


def backup_pair(title: str, ours: Cmd, label: str, pipeline: str, out: "Outputs", opts,
                overhead: bool = False) -> Pair:
    """A backup pair: the raw pipeline writes a new file and removes all but
    the newest two, as our run does (retention, keep = 2); it is measured
    with an fsync of its file (our artifacts are durable when the command
    returns) and, for reference, without."""
    def cmd(sync: bool) -> Cmd:
        tail = ' && sync "$f"' if sync else ""
        return Cmd(f"{label}{'; sync file' if sync else ' (no fsync)'}",
                   f'f={out.fresh()}; {pipeline} -o "$f"{tail} && {out.cleanup()}')
    pair = run_pair(title, ours, cmd(True), opts, plain=cmd(False), target=not overhead)
    pair.overhead = overhead
    return pair


def repeat(cmd: Cmd, opts, n: int, prepare=None) -> Side:
    side = Side(cmd)
    for _ in range(n):
        if prepare:
            prepare()
        side.samples.append(measure(cmd, opts.work))
    return side


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

@dataclass
class Data:
    pg_large: str
    pg_small: str
    pg_empty: str
    my_db: str
    media: Path
    sqlite: Path
    scale: int
    small_scale: int


def pg_exists(db: str) -> bool:
    return psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{db}'") == "1"


def pg_drop(db: str) -> None:
    psql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def pg_create(db: str) -> None:
    pg_drop(db)
    psql("postgres", f'CREATE DATABASE "{db}"')


def make_pg(db: str, scale: int, fresh: bool) -> None:
    marker = f"bench scale {scale}"
    if not fresh and pg_exists(db) and psql(
            "postgres", f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{db}'") == marker:
        log(f"PostgreSQL {db}: reusing (scale {scale})")
        return
    log(f"PostgreSQL {db}: pgbench -i -s {scale} and {scale * 2500} document rows")
    pg_create(db)
    sh(["pgbench", "-i", "-q", "-s", str(scale), "-h", "127.0.0.1", "-U", "postgres", db])
    psql(db, f"""
        CREATE EXTENSION pgcrypto;
        CREATE TABLE docs (
            id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL,
            attrs jsonb NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL);
        INSERT INTO docs
        SELECT g, 'Dokument Nr. ' || g || ' – café',
               repeat(md5(g::text) || ' lorem ipsum dolor sit amet ', 24),
               jsonb_build_object('n', g, 'even', g % 2 = 0, 'name', 'Größe ' || (g % 1000),
                                  'tags', jsonb_build_array(md5((g * 7)::text), g % 97, 'ü')),
               gen_random_bytes(768),
               timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
        FROM generate_series(1, {scale * 2500}) g;
        DROP EXTENSION pgcrypto;
        VACUUM ANALYZE;
        COMMENT ON DATABASE "{db}" IS '{marker}';
    """)


def make_mysql(db: str, scale: int, fresh: bool) -> None:
    marker = f"bench scale {scale}"
    have = mariadb(f"SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{db}'")
    if not fresh and have == "1" and mariadb(
            f"SELECT table_comment FROM information_schema.tables WHERE table_schema = '{db}' AND table_name = 'docs'") == marker:
        log(f"MariaDB {db}: reusing (scale {scale})")
        return
    accounts, docs = scale * 60000, scale * 1200
    log(f"MariaDB {db}: {accounts} account rows and {docs} document rows")
    mariadb(f"""
        DROP DATABASE IF EXISTS `{db}`;
        CREATE DATABASE `{db}` CHARACTER SET utf8mb4;
        USE `{db}`;
        CREATE TABLE accounts (aid INT PRIMARY KEY, bid INT NOT NULL, abalance INT NOT NULL,
                               filler CHAR(84) NOT NULL) ENGINE=InnoDB;
        INSERT INTO accounts SELECT seq, 1 + seq DIV 100000, 0, '' FROM seq_1_to_{accounts};
        CREATE TABLE docs (id BIGINT PRIMARY KEY, title VARCHAR(200) NOT NULL, body TEXT NOT NULL,
                           attrs JSON NOT NULL, payload BLOB NOT NULL, created_at DATETIME NOT NULL)
                           ENGINE=InnoDB COMMENT='{marker}';
        INSERT INTO docs
        SELECT seq, CONCAT('Dokument Nr. ', seq, ' – café'),
               REPEAT(CONCAT(MD5(seq), ' lorem ipsum dolor sit amet '), 24),
               JSON_OBJECT('n', seq, 'even', seq % 2 = 0, 'name', CONCAT('Größe ', seq % 1000),
                           'tags', JSON_ARRAY(MD5(seq * 7), seq % 97, 'ü')),
               RANDOM_BYTES(768), '2026-01-01' + INTERVAL seq SECOND
        FROM seq_1_to_{docs};
    """)


def make_media(root: Path, quick: bool, fresh: bool) -> None:
    small, medium, large = (500, 5, 1) if quick else (20000, 300, 4)
    medium_size, large_size = (200 << 10, 4 << 20) if quick else (1536 << 10, 100 << 20)
    marker = root / ".bench-data"
    spec = f"{small} {medium} {large} {medium_size} {large_size}\n"
    if not fresh and marker.is_file() and marker.read_text() == spec:
        log(f"media tree {root}: reusing")
        return
    log(f"media tree {root}: {small} small, {medium} medium, {large} large files")
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(20261126)
    words = ("backup restore schedule worker Größe café naïve déjà vu lorem ipsum dolor "
             "sit amet 2026 invoice photo thumbnail résumé Ørsted 東京 данные").split()
    corpus = " ".join(rng.choice(words) for _ in range(400_000)).encode()
    albums = [f"album {i:03d} – été" for i in range(40)]
    for i in range(small):
        d = root / "photos" / albums[i % len(albums)] / f"day {i % 25:02d}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(1 << 10, 16 << 10)
        at = rng.randrange(len(corpus) - n)
        (d / f"note {i:05d} ümlaut.txt").write_bytes(corpus[at:at + n])
    for i in range(medium):
        d = root / "documents" / f"Mappe {i % 12}"
        d.mkdir(parents=True, exist_ok=True)
        if i % 2:
            at = rng.randrange(len(corpus) - medium_size)
            (d / f"report {i:03d}.txt").write_bytes(corpus[at:at + medium_size])
        else:
            (d / f"scan {i:03d} – copie.jpg").write_bytes(rng.randbytes(medium_size))
    d = root / "videos" / "Große Dateien"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(large):
        with open(d / f"clip {i} ★.mp4", "wb") as f:
            for _ in range(large_size // (1 << 20)):
                f.write(rng.randbytes(1 << 20))
    marker.write_text(spec)


def make_data(opts) -> Data:
    scale = opts.scale
    small_scale = max(1, scale // 10)
    p = opts.prefix
    data = Data(
        pg_large=f"{p}_pg_s{scale}", pg_small=f"{p}_pg_s{small_scale}", pg_empty=f"{p}_pg_empty",
        my_db=f"{p}_my_s{scale}",
        media=opts.work / "data" / "media", sqlite=opts.work / "data" / "tiny.sqlite3",
        scale=scale, small_scale=small_scale)
    make_pg(data.pg_large, scale, opts.fresh_data)
    if data.pg_small != data.pg_large:
        make_pg(data.pg_small, small_scale, opts.fresh_data)
    if not pg_exists(data.pg_empty):
        psql("postgres", f"CREATE DATABASE {data.pg_empty}")
    make_mysql(data.my_db, scale, opts.fresh_data)
    make_media(data.media, opts.quick, opts.fresh_data)
    if not data.sqlite.exists():
        sh(["sqlite3", str(data.sqlite),
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 1000) "
            "INSERT INTO t SELECT i, hex(randomblob(32)) FROM c;"])
    return data


# ---------------------------------------------------------------------------
# Our side: configs and commands
# ---------------------------------------------------------------------------

def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def storage_section(url: str) -> str:
    return f'[storage]\nurl = "{url}"\nkeep = 2\n'


def base_config(opts, data: Data, storage: str) -> str:
    return (
        f'environment = "bench"\n\n[history]\nurl = "sqlite://{opts.work}/history.db"\n\n'
        f"{storage}\n"
        f"[database_backup]\ndatabases = [\n"
        f'  {{ name = "pg", url = "{PG}/{data.pg_large}" }},\n'
        f'  {{ name = "pg-small", url = "{PG}/{data.pg_small}" }},\n'
        f'  {{ name = "pg-empty", url = "{PG}/{data.pg_empty}" }},\n'
        f'  {{ name = "my", url = "mysql://root@127.0.0.1:3306/{data.my_db}" }},\n]\n\n'
        f'[media_backup]\nenabled = true\npaths = [{{ path = "{data.media}", name = "media" }}]\n'
    )


class S3Server:
    def __init__(self, root: Path):
        self.root = root
        shutil.rmtree(root, ignore_errors=True)
        (root / "bench").mkdir(parents=True)
        self.port = free_port()
        exe = shutil.which("s3s-fs") or str(Path.home() / ".cargo/bin/s3s-fs")
        self.proc = subprocess.Popen(
            [exe, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", S3_ACCESS,
             "--secret-key", S3_SECRET, str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("bench: s3s-fs did not start")
                time.sleep(0.05)

    def section(self) -> str:
        return (f'[storage]\nurl = "s3://bench/artifacts"\nendpoint = "http://127.0.0.1:{self.port}"\n'
                f'region = "us-east-1"\naccess_key_id = "{S3_ACCESS}"\nkeep = 2\n')

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


# ---------------------------------------------------------------------------
# The worker: idle cost and fire-to-start latency
# ---------------------------------------------------------------------------

def clk_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_worker(opts, config: Path, label: str) -> subprocess.Popen:
    logf = open(opts.work / f"worker-{label}.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP__")}
    env["RUST_LOG"] = "info"
    return subprocess.Popen([str(opts.bin_dir / "backup-worker"), "--config", str(config)],
                            env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_clear(namespace: str) -> None:
    sh(f"redis-cli -h 127.0.0.1 --scan --pattern '{namespace}*' | xargs -r -n 100 redis-cli -h 127.0.0.1 DEL",
       check=False)


@dataclass
class Idle:
    mode: str
    seconds: int
    rss_max_kb: int
    rss_mean_kb: float
    cpu_percent: float
    threads: int


def idle_worker(opts, data: Data, queue: bool) -> Idle:
    mode = "queue (Redis)" if queue else "single process"
    ns = f"{opts.prefix}-idle-{os.getpid()}"
    d = opts.work / ("idle-queue" if queue else "idle-single")
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    queue_section = f'[queue]\nurl = "{REDIS}"\nnamespace = "{ns}"\n' if queue else ""
    config = write_config(d / "backup.toml", (
        f'environment = "bench"\nverify_schedule = "0 5 * * 0"\n\n'
        f'[history]\nurl = "sqlite://{d}/history.db"\n\n{storage_section(f"file://{d}/store")}\n'
        f"{queue_section}\n[http]\nlisten = \"127.0.0.1:{free_port()}\"\n\n[dashboard]\nenabled = true\n\n"
        f'[database_backup]\nschedule = "0 3 * * *"\n'
        f'databases = [{{ name = "pg", url = "{PG}/{data.pg_small}" }}]\n\n'
        f'[media_backup]\nenabled = true\nschedule = "30 3 * * *"\n'
        f'paths = [{{ path = "{data.media}", name = "media" }}]\n'))
    cli(opts, config, ["schedules", "setup"])
    proc = start_worker(opts, config, "idle-queue" if queue else "idle-single")
    try:
        time.sleep(opts.settle)  # start-up: migrations, Redis connections
        if proc.poll() is not None:
            raise SystemExit(f"bench: backup-worker exited at start; see {opts.work}/worker-*.log")
        log(f"idle worker, {mode}: sampling for {opts.idle_seconds} s")
        hz = os.sysconf("SC_CLK_TCK")
        t0, c0 = time.monotonic(), clk_ticks(proc.pid)
        rss: list[int] = []
        while time.monotonic() - t0 < opts.idle_seconds:
            rss.append(rss_kb(proc.pid))
            time.sleep(0.5)
        t1, c1 = time.monotonic(), clk_ticks(proc.pid)
        threads = len(os.listdir(f"/proc/{proc.pid}/task"))
        return Idle(mode, opts.idle_seconds, max(rss), statistics.mean(rss),
                    100.0 * (c1 - c0) / hz / (t1 - t0), threads)
    finally:
        stop_worker(proc)
        if queue:
            redis_clear(ns)


@dataclass
class Latency:
    replicas: int
    fires: int
    latencies: list[float]
    duplicates: int
    missed: int

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def latency(opts, data: Data) -> Latency:
    ns = f"{opts.prefix}-fire-{os.getpid()}"
    history_db = f"{opts.prefix}_history"
    pg_create(history_db)
    d = opts.work / "latency"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    config = write_config(d / "backup.toml", (
        f'environment = "bench"\n\n[history]\nurl = "{PG}/{history_db}"\n\n'
        f'{storage_section(f"file://{d}/store")}\n'
        f'[queue]\nurl = "{REDIS}"\nnamespace = "{ns}"\n\n[http]\nlisten = ""\n\n'
        f'[database_backup]\nschedule = "* * * * * *"\n'
        f'databases = [{{ name = "tiny", url = "sqlite://{data.sqlite}" }}]\n'))
    cli(opts, config, ["schedules", "setup"])
    workers = [start_worker(opts, config, f"replica-{i}") for i in range(opts.replicas)]
    try:
        time.sleep(opts.settle)
        if any(w.poll() is not None for w in workers):
            raise SystemExit(f"bench: a replica exited at start; see {opts.work}/worker-replica-*.log")
        since = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
        log(f"fire-to-start latency: {opts.replicas} replicas, waiting for {opts.fires} fires")
        deadline = time.monotonic() + opts.fires * 2 + 60
        while True:
            runs = [r for r in json.loads(cli(opts, config, ["runs", "list", "--json", "--limit", "1000"]))
                    if r["scheduled_for"] and parse_time(r["scheduled_for"]) >= since]
            fired = sorted({r["scheduled_for"] for r in runs})
            if len(fired) >= opts.fires + 1:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: only {len(fired)} of {opts.fires} fires ran in time")
            time.sleep(1)
    finally:
        for w in workers:
            stop_worker(w)
        redis_clear(ns)
    window = fired[:opts.fires]
    first = {}
    duplicates = 0
    for r in sorted(runs, key=lambda r: r["started_at"]):
        if r["scheduled_for"] not in window or r["attempt"] != 1:
            continue
        if r["scheduled_for"] in first:
            duplicates += 1
        else:
            first[r["scheduled_for"]] = r
    lat = [(parse_time(r["started_at"]) - parse_time(s)).total_seconds() for s, r in first.items()]
    span = (parse_time(window[-1]) - parse_time(window[0])).total_seconds()
    missed = int(round(span)) + 1 - len(window)
    pg_drop(history_db)
    return Latency(opts.replicas, len(window), lat, duplicates, missed)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def cli(opts, config: Path, args: list[str], env: dict | None = None) -> str:
    full = dict(os.environ)
    full.update(env or {})
    return sh([str(opts.bin_dir / "backup-cli"), "--config", str(config), *args], env=full)


def ours(opts, config: Path, label: str, args: list[str], env: dict | None = None) -> Cmd:
    return Cmd(label, [str(opts.bin_dir / "backup-cli"), "--config", str(config), *args], env)


class Outputs:
    """Where a raw pipeline writes: a new file each run, then the older ones
    beyond the newest two removed, within the timed command. That is what
    our run does (a new artifact, then retention with keep = 2), and it
    churns the page cache alike: on this VM freed pages go back to the host
    (virtio-balloon free page reporting) and cost a fault when touched
    again, so a pipeline overwriting one file would look cheaper than it is."""

    def __init__(self, directory: Path, name: str, ext: str):
        self.dir, self.name, self.ext = directory, name, ext

    def fresh(self) -> str:
        """Shell text naming a new file."""
        return f"{self.dir}/{self.name}-$(date +%s%N).{self.ext}"

    def cleanup(self) -> str:
        """Shell text removing all but the newest two."""
        return f"ls -1 {self.dir}/{self.name}-*.{self.ext} | head -n -2 | xargs -r rm --"

    def latest(self) -> Path:
        return sorted(self.dir.glob(f"{self.name}-*.{self.ext}"))[-1]


def run_all(opts) -> dict:
    opts.work.mkdir(parents=True, exist_ok=True)
    raw = opts.work / "raw"
    raw.mkdir(exist_ok=True)
    pg_out, my_out = Outputs(raw, "pg", "dump.zst"), Outputs(raw, "my", "sql.zst")
    media_out = Outputs(raw, "media", "tar.zst")
    if opts.sections == {"dashboard"}:
        # The dashboard seeds its own history; it needs none of the data.
        return {"dashboard": dashboard.run(opts, cli, start_worker, stop_worker, free_port, psql, log)}
    data = make_data(opts)
    results: dict = {"data": data, "pairs": [], "memory": {}, "sizes": {}}
    local = write_config(opts.work / "local.toml",
                         base_config(opts, data, storage_section(f"file://{opts.work}/store")))
    cli(opts, local, ["migrate"])
    pg_url = f"{PG}/{data.pg_large}"
    want = set(opts.sections)
    # Restores read what the backups wrote; memory compares with pairs 1 and 4.
    if "memory" in want:
        want |= {"pg", "restore-pg"}
    if "restore-pg" in want:
        want.add("pg")
    if "restore-media" in want:
        want.add("media")

    results["sizes"] = {
        "pg_large": int(psql("postgres", f"SELECT pg_database_size('{data.pg_large}')")),
        "pg_small": int(psql("postgres", f"SELECT pg_database_size('{data.pg_small}')")),
        "mysql": int(mariadb(
            f"ANALYZE TABLE `{data.my_db}`.accounts, `{data.my_db}`.docs;"
            f"SELECT SUM(data_length + index_length) FROM information_schema.tables "
            f"WHERE table_schema = '{data.my_db}'").splitlines()[-1]),
        "media": tree_size(data.media),
    }

    if "pg" in want:
        results["pairs"].append(backup_pair(
            "1. PostgreSQL backup",
            ours(opts, local, "backup-cli backup database (zstd)", ["backup", "database", "--target", "pg"]),
            "pg_dump -Fc -Z0 | zstd -T0 -3 > file", f"pg_dump -Fc -Z0 -d '{pg_url}' | zstd -T0 -3 -q",
            pg_out, opts))
        results["sizes"]["pg_dump_zst"] = pg_out.latest().stat().st_size
        results["sizes"]["pg_dump_raw"] = int(sh(f"zstd -dc {pg_out.latest()} | wc -c"))

    if "encrypted" in want:
        # age with an X25519 key on both sides; the worker holds only the
        # public key.
        key = opts.work / "age-key.txt"
        if not key.exists():
            sh(["age-keygen", "-o", str(key)])
        public = sh(["age-keygen", "-y", str(key)]).strip()
        enc = write_config(opts.work / "local-age.toml", base_config(
            opts, data, storage_section(f"file://{opts.work}/store-age"))
            + f'\n[encryption]\nrecipients = ["{public}"]\n')
        age_out = Outputs(raw, "age", "dump.zst.age")
        results["pairs"].append(backup_pair(
            "7. PostgreSQL backup, encrypted with age",
            ours(opts, enc, "backup-cli backup database (zstd, age)",
                 ["backup", "database", "--target", "pg"]),
            "pg_dump -Fc -Z0 | zstd -T0 -3 | age -r KEY > file",
            f"pg_dump -Fc -Z0 -d '{pg_url}' | zstd -T0 -3 -q | age -r {public}", age_out, opts))

    if "empty" in want:
        # The fixed cost of a run: history, preflight, fsyncs, manifest,
        # retention listing, with next to nothing to dump.
        empty_out = Outputs(raw, "empty", "dump.zst")
        results["pairs"].append(backup_pair(
            "8. Empty PostgreSQL database (the fixed cost of a run)",
            ours(opts, local, "backup-cli backup database (empty)",
                 ["backup", "database", "--target", "pg-empty"]),
            "pg_dump -Fc -Z0 | zstd -T0 -3 > file",
            f"pg_dump -Fc -Z0 -d '{PG}/{data.pg_empty}' | zstd -T0 -3 -q", empty_out, opts, overhead=True))

    if "mysql" in want:
        flags = "--single-transaction --routines --triggers --events --hex-blob --max-allowed-packet=1G"
        results["pairs"].append(backup_pair(
            "2. MariaDB backup",
            ours(opts, local, "backup-cli backup database (zstd)", ["backup", "database", "--target", "my"]),
            "mariadb-dump --single-transaction … | zstd -T0 -3 > file",
            f"mariadb-dump {' '.join(MY)} {flags} {data.my_db} | zstd -T0 -3 -q", my_out, opts))
        results["sizes"]["my_dump_zst"] = my_out.latest().stat().st_size

    if "media" in want:
        results["pairs"].append(backup_pair(
            "3. Media backup",
            ours(opts, local, "backup-cli backup media (zstd)", ["backup", "media", "--target", "media"]),
            "tar -cf - DIR | zstd -T0 -3 > file", f"tar -cf - -C '{data.media}' . | zstd -T0 -3 -q",
            media_out, opts))
        results["sizes"]["media_tar_zst"] = media_out.latest().stat().st_size

    if "restore-pg" in want:
        fresh = f"{opts.prefix}_restore"
        rows = psql(data.pg_large, "SELECT count(*) FROM pgbench_accounts")

        def check(_side: str) -> None:
            got = psql(fresh, "SELECT count(*) FROM pgbench_accounts")
            if got != rows:
                raise SystemExit(f"bench: the restore left {got} accounts, not {rows}")

        results["pairs"].append(run_pair(
            "4. PostgreSQL restore",
            ours(opts, local, "backup-cli restore database --into fresh",
                 ["restore", "database", "--target", "pg", "--latest", "--yes"],
                 {"BACKUP_RESTORE_INTO": f"{PG}/{fresh}"}),
            Cmd("zstd -dc | pg_restore -d fresh",
                f"zstd -dc {pg_out.latest()} | pg_restore -d '{PG}/{fresh}'"),
            opts, prepare=lambda _side: pg_create(fresh), check=check))

    if "restore-media" in want:
        into = opts.work / "restored-media"
        files = tree_size(data.media)[0]

        def prepare(side: str) -> None:
            shutil.rmtree(into, ignore_errors=True)
            if side == "raw":
                into.mkdir()

        def check(_side: str) -> None:
            got = tree_size(into)[0]
            if got != files:
                raise SystemExit(f"bench: the media restore left {got} files, not {files}")

        results["pairs"].append(run_pair(
            "5. Media restore",
            ours(opts, local, "backup-cli restore media", ["restore", "media", "--target", "media",
                                                            "--latest", "--to", str(into)]),
            Cmd("zstd -dc | tar -x", f"zstd -dc {media_out.latest()} | tar -xf - -C '{into}'"),
            opts, prepare=prepare, check=check))

    if "s3" in want:
        server = S3Server(opts.work / "s3")
        try:
            s3 = write_config(opts.work / "s3.toml", base_config(opts, data, server.section()))
            results["pairs"].append(run_pair(
                "6. PostgreSQL backup to S3 (s3s-fs) vs local disk",
                ours(opts, s3, "backup-cli backup database → S3", ["backup", "database", "--target", "pg"],
                     {"BACKUP__STORAGE__SECRET_ACCESS_KEY": S3_SECRET}),
                ours(opts, local, "backup-cli backup database → local", ["backup", "database", "--target", "pg"]),
                opts, target=False))
        finally:
            server.stop()

    if "memory" in want:
        log("memory at the small size")
        mem = results["memory"]
        mem["backup_small"] = repeat(
            ours(opts, local, "backup small", ["backup", "database", "--target", "pg-small"]), opts,
            max(1, opts.runs // 2 + 1))
        fresh = f"{opts.prefix}_restore"
        mem["restore_small"] = repeat(
            ours(opts, local, "restore small", ["restore", "database", "--target", "pg-small", "--latest", "--yes"],
                 {"BACKUP_RESTORE_INTO": f"{PG}/{fresh}"}),
            opts, max(1, opts.runs // 2 + 1), prepare=lambda: pg_create(fresh))
        pg_drop(fresh)

    if "paths" in want:
        results["paths"] = paths.run(opts, data, sys.modules[__name__])

    if "worker" in want:
        results["idle"] = [idle_worker(opts, data, queue=True), idle_worker(opts, data, queue=False)]

    if "latency" in want:
        results["latency"] = latency(opts, data)

    if "dashboard" in want:
        results["dashboard"] = dashboard.run(opts, cli, start_worker, stop_worker, free_port, psql, log)

    pg_drop(f"{opts.prefix}_restore")
    return results


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def version(cmd: str) -> str:
    out = sh(cmd, check=False).strip().splitlines()
    return out[0].strip("* ") if out else "?"


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def stats(times: list[float]) -> str:
    return f"{min(times):.2f} s | {statistics.median(times):.2f} s | {max(times):.2f} s"


# Processes of the pipelines' own plumbing, not worth a column; and a child
# of ours caught between fork and exec, still named after the thread that
# forked it.
HELPERS = {"bash", "xargs", "rm", "head", "ls", "sync", "date", "tokio-rt-worker"}


def cell(label: str) -> str:
    """A command as a table cell (a pipe would end the cell)."""
    return "`" + label.replace("|", "\\|") + "`"


def peaks_text(peaks: dict[str, int]) -> str:
    return ", ".join(f"{k} {mb(v)}" for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])
                     if k not in HELPERS)


def report(opts, results: dict) -> str:
    data: Data = results["data"]
    sizes = results["sizes"]
    lines: list[str] = []
    w = lines.append
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'", check=False).strip() or platform.processor()
    w(f"Run on {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
      f"{' in **quick mode** (tiny data, one run: figures mean nothing)' if opts.quick else ''}.")
    w("")
    w(f"Reproduce: `{opts.reproduce}`")
    w("")
    w("### Machine and tools")
    w("")
    w(f"- {os.cpu_count()} cores ({cpu}), {mem_total / 2**30:.0f} GiB RAM, Linux {platform.release()}")
    for label, cmd in [
        ("backup-cli", f"{opts.bin_dir}/backup-cli --version"),
        ("pg_dump", "pg_dump --version"), ("pg_restore", "pg_restore --version"),
        ("PostgreSQL server", f"psql -X -At -d {PG}/postgres -c 'SHOW server_version'"),
        ("mariadb-dump", "mariadb-dump --version"),
        ("MariaDB server", "mariadb --host=127.0.0.1 --user=root -N -e 'SELECT VERSION()'"),
        ("zstd", "zstd --version"), ("tar", "tar --version"), ("Redis", "redis-server --version"),
    ]:
        w(f"- {label}: {version(cmd)}")
    w("")
    w("### Data")
    w("")
    w(f"- PostgreSQL `{data.pg_large}`: `pgbench -i -s {data.scale}` plus {data.scale * 2500} rows of "
      f"text/jsonb/bytea; {human(sizes['pg_large'])} on disk"
      + (f"; `pg_dump -Fc -Z0` output {human(sizes['pg_dump_raw'])}, {human(sizes['pg_dump_zst'])} "
         "with zstd -3" if "pg_dump_raw" in sizes else ""))
    w(f"- PostgreSQL `{data.pg_small}` (memory at a size {data.scale // data.small_scale}x smaller): "
      f"{human(sizes['pg_small'])} on disk")
    w(f"- MariaDB `{data.my_db}`: {data.scale * 60000} account rows plus {data.scale * 1200} rows of "
      f"text/JSON/blob; {human(sizes['mysql'])} in InnoDB"
      + (f"; dump {human(sizes['my_dump_zst'])} with zstd -3" if "my_dump_zst" in sizes else ""))
    files, size = sizes["media"]
    w(f"- Media: {files} files, {human(size)} (small text notes, medium documents and scans, large "
      "random clips; nested, names with spaces and non-ASCII)"
      + (f"; {human(sizes['media_tar_zst'])} as tar.zst" if "media_tar_zst" in sizes else ""))
    w("")
    w(f"Each pair ran alternately (A B, B A, …) {opts.runs} time(s) after {opts.warmup} warm-up run(s) "
      "each, with warm page caches. Peak RSS is the kernel's high-water mark (VmHWM) of each process, "
      "sampled every 10 ms; `bash` (the pipeline's shell) is left out. The ratio is the median of the "
      "per-round ratios ours/raw.")
    w("")
    for pair in results["pairs"]:
        w(f"### {pair.title}")
        w("")
        w("| command | min | median | max | peak RSS |")
        w("|---|---|---|---|---|")
        for side in (pair.ours, pair.raw, pair.plain):
            if side:
                w(f"| {cell(side.cmd.label)} | {stats(side.times)} | {peaks_text(side.peaks())} |")
        ratios = pair.ratios()
        verdict = f" (target ≤ {TARGET_RATIO:.2f}x: {mark(pair.ratio() <= TARGET_RATIO)})" if pair.target else ""
        w("")
        w(f"Ratio: **{pair.ratio():.2f}x** (rounds: {', '.join(f'{r:.2f}' for r in ratios)}){verdict}")
        if pair.overhead:
            extra = statistics.median(pair.differences())
            w("")
            w(f"Overhead: **{extra * 1000:.0f} ms** over the raw pipeline (median of the rounds: "
              f"{', '.join(f'{d * 1000:.0f}' for d in pair.differences())} ms) "
              f"(target ≤ {TARGET_OVERHEAD * 1000:.0f} ms: {mark(extra <= TARGET_OVERHEAD)})")
        if pair.plain:
            w("")
            w(f"Against the same pipeline without its fsync: {pair.ratio(pair.plain):.2f}x "
              f"(rounds: {', '.join(f'{r:.2f}' for r in pair.ratios(pair.plain))})")
        w("")

    pairs = {p.title.split(".")[0]: p for p in results["pairs"]}
    mem = results["memory"]
    if mem and "1" in pairs and "4" in pairs:
        w("### Memory against database size")
        w("")
        w("| | small database | large database | spread | target |")
        w("|---|---|---|---|---|")
        for label, small, large, tool, limit in [
            ("backup-cli, backup", mem["backup_small"].peaks(), pairs["1"].ours.peaks(), "backup-cli",
             TARGET_BACKUP_RSS_MB),
            ("pg_dump (child)", mem["backup_small"].peaks(), pairs["1"].ours.peaks(), "pg_dump", None),
            ("backup-cli, restore", mem["restore_small"].peaks(), pairs["4"].ours.peaks(), "backup-cli",
             TARGET_RESTORE_RSS_MB),
            ("pg_restore (child)", mem["restore_small"].peaks(), pairs["4"].ours.peaks(), "pg_restore", None),
        ]:
            a, b = small.get(tool), large.get(tool)
            spread = abs(b - a) / max(a, b) if a and b else 0.0
            goal = "-"
            if limit:
                goal = (f"≤ {limit} MB: {mark(max(a or 0, b or 0) / 1024 <= limit)}; "
                        f"within {TARGET_RSS_SPREAD:.0%}: {mark(spread <= TARGET_RSS_SPREAD)}")
            w(f"| {label} | {mb(a)} | {mb(b)} | {spread:.1%} | {goal} |")
        w("")
        worst_backup = max((p.ours.peaks().get("backup-cli", 0) for k, p in pairs.items() if k in "123678"),
                           default=0)
        worst_restore = max((p.ours.peaks().get("backup-cli", 0) for k, p in pairs.items() if k in "45"), default=0)
        w(f"Highest backup-cli peak in any backup above: {mb(worst_backup)} "
          f"(target ≤ {TARGET_BACKUP_RSS_MB} MB: {mark(worst_backup / 1024 <= TARGET_BACKUP_RSS_MB)}); "
          f"in any restore: {mb(worst_restore)} "
          f"(target ≤ {TARGET_RESTORE_RSS_MB} MB: {mark(worst_restore / 1024 <= TARGET_RESTORE_RSS_MB)}).")
        w("")

    if "paths" in results:
        paths.report(results["paths"], sys.modules[__name__], w)

    if "idle" in results:
        w("### Idle worker")
        w("")
        w(f"`backup-worker` with 3 schedules (database, media, verify) and the HTTP listener with the dashboard on, "
          f"after {opts.settle} s of start-up, sampled every 0.5 s.")
        w("")
        w("| mode | seconds | RSS max | RSS mean | CPU (of one core) | threads | target |")
        w("|---|---|---|---|---|---|---|")
        for i in results["idle"]:
            ok = i.rss_max_kb / 1024 <= TARGET_IDLE_RSS_MB and i.cpu_percent < TARGET_IDLE_CPU
            w(f"| {i.mode} | {i.seconds} | {mb(i.rss_max_kb)} | {mb(int(i.rss_mean_kb))} | "
              f"{i.cpu_percent:.2f}% | {i.threads} | ≤ {TARGET_IDLE_RSS_MB} MB, < {TARGET_IDLE_CPU:.0f}%: {mark(ok)} |")
        w("")

    if "latency" in results:
        lat: Latency = results["latency"]
        w("### Fire-to-start latency")
        w("")
        w(f"{lat.replicas} `backup-worker` replicas on one Redis queue and one PostgreSQL history, "
          f"schedule `* * * * * *` (every second) on a small SQLite database; latency is the run's "
          f"`started_at` minus its `scheduled_for`.")
        w("")
        w("| fires | p50 | p99 | max | duplicate runs | missed fires | target |")
        w("|---|---|---|---|---|---|---|")
        w(f"| {lat.fires} | {lat.pct(50) * 1000:.0f} ms | {lat.pct(99) * 1000:.0f} ms | "
          f"{max(lat.latencies) * 1000:.0f} ms | {lat.duplicates} | {lat.missed} | "
          f"p99 < {TARGET_LATENCY_P99:.0f} s: {mark(lat.pct(99) < TARGET_LATENCY_P99)} |")
        w("")

    return "\n".join(lines)


def summary(results: dict) -> dict:
    """The figures as data (`--json`), for whoever checks them by program."""
    def side(s: "Side | None") -> dict | None:
        if not s:
            return None
        return {"label": s.cmd.label, "seconds": s.times, "peak_rss_kb": s.peaks()}

    pairs = [{"title": p.title, "ours": side(p.ours), "raw": side(p.raw), "plain": side(p.plain),
              "ratio": p.ratio(), "held_to_target": p.target,
              "overhead_seconds": statistics.median(p.differences()) if p.overhead else None}
             for p in results["pairs"]]
    out: dict = {"pairs": pairs,
                 "memory": {k: side(v) for k, v in results["memory"].items()}}
    if "paths" in results:
        out["paths"] = [{"storage": r.service, "encrypted": r.encrypted,
                         **{k: side(getattr(r, k)) for k in
                            ("backup_large", "backup_small", "restore_large", "restore_small")}}
                        for r in results["paths"]]
    if "idle" in results:
        out["idle"] = [dataclasses.asdict(i) for i in results["idle"]]
    if "dashboard" in results:
        out["dashboard"] = [dataclasses.asdict(b) for b in results["dashboard"]]
    if "latency" in results:
        lat: Latency = results["latency"]
        out["latency"] = {"replicas": lat.replicas, "fires": lat.fires, "runs": len(lat.latencies),
                          "duplicates": lat.duplicates, "missed": lat.missed,
                          "p50_seconds": lat.pct(50), "p99_seconds": lat.pct(99)}
    return out


def write_report(path: Path, body: str, start: str = MARK_START, end: str = MARK_END) -> None:
    """Replaces the block between `start` and `end` in `path` (appending it
    when there is none)."""
    block = f"{start}\n\n{body}\n{end}"
    if path.is_file():
        text = path.read_text()
        if start in text and end in text:
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1]
            path.write_text(head + block + tail)
            return
        path.write_text(text.rstrip("\n") + f"\n\n{block}\n")
        return
    path.write_text(f"# Benchmarks\n\n{block}\n")


SECTIONS = ["pg", "encrypted", "empty", "mysql", "media", "restore-pg", "restore-media", "s3", "memory",
            "paths", "worker", "latency",
            "dashboard"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny data, one run each, short worker phases")
    ap.add_argument("--scale", type=int, help="pgbench scale of the large database (default 50; quick 1)")
    ap.add_argument("--runs", type=int, help="measured runs per command (default 5; quick 1)")
    ap.add_argument("--warmup", type=int, help="warm-up runs per command (default 1; quick 0)")
    ap.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--out", type=Path, help="report file (default BENCHMARKS.md; quick: WORK/BENCHMARKS.md)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    ap.add_argument("--work", type=Path, help="scratch directory (default /tmp/backup-bench[-quick])")
    ap.add_argument("--bin-dir", type=Path, required=True, help="directory of backup-cli and backup-worker")
    ap.add_argument("--prefix", help="prefix of databases and Redis keys (default bench; quick benchq)")
    ap.add_argument("--fresh-data", action="store_true", help="recreate the data even if it is there")
    ap.add_argument("--drop-data", action="store_true", help="drop the databases and WORK at the end")
    ap.add_argument("--reproduce", default="bash bench/run.sh", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    q = opts.quick
    opts.scale = opts.scale or (1 if q else 50)
    opts.runs = opts.runs if opts.runs is not None else (1 if q else 5)
    opts.warmup = opts.warmup if opts.warmup is not None else (0 if q else 1)
    opts.prefix = opts.prefix or ("benchq" if q else "bench")
    opts.work = (opts.work or Path(f"/tmp/backup-bench{'-quick' if q else ''}")).resolve()
    opts.out = opts.out or (opts.work / "BENCHMARKS.md" if q else Path("BENCHMARKS.md"))
    opts.bin_dir = opts.bin_dir.resolve()
    opts.idle_seconds = 3 if q else 60
    opts.settle = 2 if q else 5
    opts.fires = 5 if q else 50
    opts.replicas = 3
    opts.sections = set(SECTIONS if not opts.only else opts.only.split(","))
    unknown = opts.sections - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for exe in ("backup-cli", "backup-worker"):
        if not (opts.bin_dir / exe).is_file():
            ap.error(f"{opts.bin_dir / exe} does not exist")

    results = run_all(opts)
    if opts.json:
        opts.json.write_text(json.dumps(summary(results), indent=2))
    # The dashboard's figures have a block of their own, so that
    # `--only dashboard` refreshes them and leaves the others be.
    dash = results.pop("dashboard", None)
    if results:
        body = report(opts, results)
        write_report(opts.out, body)
        print(body)
    if dash:
        text = "\n".join(dashboard.report(dash, opts, opts.reproduce))
        write_report(opts.out, text, dashboard.MARK_START, dashboard.MARK_END)
        print(text)
    log(f"wrote {opts.out}")
    if opts.drop_data:
        data: Data = results["data"]
        for db in {data.pg_large, data.pg_small, data.pg_empty}:
            pg_drop(db)
        mariadb(f"DROP DATABASE IF EXISTS `{data.my_db}`")
        for entry in opts.work.iterdir():
            if entry.resolve() != opts.out.resolve():
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


if __name__ == "__main__":
    main()

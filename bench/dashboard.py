"""The dashboard benchmark: with 100,000 runs in history (SQLite, then
PostgreSQL), how long each page takes to render, requested one after another
over keep-alive HTTP on loopback (so the figure is server time plus a
loopback round trip: an upper bound of the server's), and how much a page
with its assets weighs. Used by bench.py (section `dashboard`)."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

RUNS = 100_000
TARGETS = 10
TARGET_P99_MS = 50.0
TARGET_PAGE_KB = 100.0
TARGET_IDLE_RSS_MB = 30.0
TARGET_IDLE_CPU = 1.0
MARK_START = "<!-- dashboard:start (written by bench/run.sh; edits here are overwritten) -->"
MARK_END = "<!-- dashboard:end -->"


@dataclass
class PageTime:
    path: str
    label: str
    times_ms: list[float]
    bytes: int

    def pct(self, p: float) -> float:
        xs = sorted(self.times_ms)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


@dataclass
class Backend:
    name: str
    runs: int
    pages: list[PageTime] = field(default_factory=list)
    weight_kb: float = 0.0
    # The worker left idle after serving the pages: RSS max (KiB) and CPU
    # (% of one core) over `idle_seconds`.
    idle_seconds: float = 0.0
    idle_rss_kb: int = 0
    idle_cpu: float = 0.0


def idle(pid: int, seconds: float) -> tuple[int, float]:
    """Peak RSS (KiB) and CPU (% of one core) of `pid` over `seconds`."""
    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def rss() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    hz = os.sysconf("SC_CLK_TCK")
    t0, c0, peak = time.monotonic(), ticks(), 0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, rss())
        time.sleep(0.5)
    return peak, 100.0 * (ticks() - c0) / hz / (time.monotonic() - t0)


def seed_sql(backend: str, n: int) -> str:
    """One statement that inserts `n` runs over the last n minutes: ten
    targets, one run in ten failed with an error message."""
    if backend == "postgres":
        return (
            "INSERT INTO backup_runs (backup_type, target, status, \"trigger\", attempt, worker, "
            "started_at, completed_at, duration_seconds, error_message, artifact, size_bytes) "
            f"SELECT 'database', 'app' || (i % {TARGETS}), "
            "CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'success' END, 'schedule', 1, 'bench:1', "
            "now() - make_interval(mins => i), now() - make_interval(mins => i) + interval '3 seconds', 3.0, "
            "CASE WHEN i % 10 = 0 THEN 'pg_dump: error: connection to server failed: FATAL: "
            "password authentication failed for user backup (run ' || i || ')' ELSE '' END, "
            "NULL, 1048576 FROM generate_series(1, " + str(n) + ") AS i;"
        )
    return (
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < " + str(n) + ") "
        "INSERT INTO backup_runs (backup_type, target, status, \"trigger\", attempt, worker, "
        "started_at, completed_at, duration_seconds, error_message, artifact, size_bytes) "
        f"SELECT 'database', 'app' || (i % {TARGETS}), "
        "CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'success' END, 'schedule', 1, 'bench:1', "
        "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now', '-' || i || ' minutes'), "
        "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now', '-' || i || ' minutes', '+3 seconds'), 3.0, "
        "CASE WHEN i % 10 = 0 THEN 'pg_dump: error: connection to server failed: FATAL: "
        "password authentication failed for user backup (run ' || i || ')' ELSE '' END, "
        "NULL, 1048576 FROM s;"
    )


def get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    body = r.read()
    return r.status, body


def measure_pages(port: int, token: str, requests: int, runs: int, log) -> tuple[list[PageTime], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deep = deep_cursor(conn, token, runs)
    status, run = get(conn, "/api/runs?status=failed&limit=1", token)
    run_id = run.split(b'"id":', 1)[1].split(b",", 1)[0].decode() if b'"id":' in run else "1"
    pages = [
        ("/", "overview (10 targets, 30-run strips)"),
        ("/runs", "runs, first page"),
        ("/runs?status=failed", "runs, status filter"),
        ("/runs?target=app3&type=database", "runs, target filter"),
        ("/runs?since=7d&until=1d", "runs, date range"),
        ("/runs?q=no+such+text+anywhere", "runs, search matching nothing"),
        ("/runs?q=authentication", "runs, search matching 10%"),
        (f"/runs?before={deep}", "runs, halfway down (keyset)"),
        (f"/runs/{run_id}", "run detail"),
        ("/schedules", "schedules"),
        ("/artifacts", "artifacts"),
        ("/api/runs", "GET /api/runs"),
        ("/api/targets", "GET /api/targets"),
    ]
    out = []
    for path, label in pages:
        for _ in range(5):
            status, body = get(conn, path, token)
            if status != 200:
                raise SystemExit(f"bench: GET {path} answered {status}: {body[:200]!r}")
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            status, body = get(conn, path, token)
            times.append((time.perf_counter() - t0) * 1000)
        out.append(PageTime(path, label, times, len(body)))
        log(f"dashboard {path}: p50 {statistics.median(times):.1f} ms, p99 "
            f"{sorted(times)[int(0.99 * (len(times) - 1))]:.1f} ms")
    # The heaviest page with everything it loads.
    _, css = get(conn, "/static/app.css", token)
    _, js = get(conn, "/static/live.js", token)
    heaviest = max(p.bytes for p in out if not p.path.startswith("/api/"))
    return out, (heaviest + len(css) + len(js)) / 1024


def deep_cursor(conn: http.client.HTTPConnection, token: str, runs: int) -> str:
    """The cursor halfway down the history (page 1,000 of 50 with 100,000
    runs): the newest run that started before then."""
    _, body = get(conn, f"/api/runs?limit=1&until={runs // 2}m", token)
    runs = json.loads(body)
    if not runs:
        raise SystemExit("bench: no run halfway down the seeded history")
    r = runs[0]
    t = datetime.fromisoformat(r["started_at"].replace("Z", "+00:00"))
    micros = (t - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    return f"{micros}.{r['id']}"


def run(opts, cli, start_worker, stop_worker, free_port, psql, log) -> list[Backend]:
    """Both backends; `cli`, `start_worker`... are bench.py's helpers."""
    results = []
    requests = 20 if opts.quick else 200
    n = 2_000 if opts.quick else RUNS
    for backend in ("sqlite", "postgres"):
        d = opts.work / f"dashboard-{backend}"
        subprocess.run(["rm", "-rf", str(d)], check=True)
        d.mkdir(parents=True)
        if backend == "postgres":
            db = f"{opts.prefix}_dashboard"
            psql("postgres", f"DROP DATABASE IF EXISTS {db}")
            psql("postgres", f"CREATE DATABASE {db}")
            history = f"postgres://postgres@127.0.0.1:5432/{db}"
        else:
            history = f"sqlite://{d}/history.db"
        token = "bench-token-0123456789abcdef0123456789"
        port = free_port()
        targets = ", ".join(f'{{ name = "app{i}", url = "sqlite://{d}/app{i}.db" }}' for i in range(TARGETS))
        config = d / "backup.toml"
        config.write_text(
            f'[history]\nurl = "{history}"\n[storage]\nurl = "file://{d}/store"\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\n[database_backup]\nschedule = "0 3 * * *"\n'
            f"databases = [{targets}]\n")
        hashed = subprocess.run([str(opts.bin_dir / "backup-cli"), "--config", str(config), "dashboard",
                                 "hash-password"], input=token + "\n", capture_output=True, text=True,
                                check=True).stdout.strip()
        config.write_text(config.read_text() + (
            f'[dashboard]\nenabled = true\nsecret_key = "{"k" * 40}"\n'
            f'[[dashboard.tokens]]\nname = "bench"\ntoken_hash = "{hashed}"\nrole = "operator"\n'))
        cli(opts, config, ["migrate"])
        cli(opts, config, ["schedules", "setup"])
        log(f"dashboard ({backend}): seeding {n} runs")
        sql = seed_sql(backend, n)
        if backend == "postgres":
            psql(db, sql)
            psql(db, "ANALYZE backup_runs")
        else:
            subprocess.run(["sqlite3", str(d / "history.db")], input=sql + "\nANALYZE;\n", text=True,
                           check=True)
        proc = start_worker(opts, config, f"dashboard-{backend}")
        try:
            for _ in range(100):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", "/healthz")
                    c.getresponse().read()
                    break
                except OSError:
                    time.sleep(0.1)
            pages, weight = measure_pages(port, token, requests, n, log)
            seconds = 3 if opts.quick else 30
            log(f"dashboard ({backend}): worker idle for {seconds} s after serving the pages")
            time.sleep(2)
            rss_kb, cpu = idle(proc.pid, seconds)
            results.append(Backend(backend, n, pages, weight, seconds, rss_kb, cpu))
        finally:
            stop_worker(proc)
            if backend == "postgres":
                psql("postgres", f"DROP DATABASE IF EXISTS {db}")
    return results


def report(results: list[Backend], opts, reproduce: str) -> list[str]:
    requests = 20 if opts.quick else 200
    lines = ["### Dashboard", ""]
    alone = "bash bench/run.sh --only dashboard"
    also = f" (or `{alone}`)" if reproduce != alone else ""
    lines.append(f"Run on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
                 f"{' in **quick mode** (figures mean nothing)' if opts.quick else ''}, "
                 f"{os.cpu_count()} cores; reproduce: `{reproduce}`{also}.")
    lines.append("")
    lines.append(
        f"`backup-worker` in single-process mode with the dashboard on, {results[0].runs:,} runs of "
        f"{TARGETS} targets in history (one in ten failed), each page requested {requests} times one "
        "after another over keep-alive HTTP on loopback with a bearer token (so each time is the "
        "server's plus a loopback round trip).")
    lines.append("")
    for b in results:
        lines.append(f"**History in {'SQLite' if b.name == 'sqlite' else 'PostgreSQL'}**")
        lines.append("")
        lines.append("| page | p50 | p99 | max | size | target |")
        lines.append("|---|---|---|---|---|---|")
        for p in b.pages:
            ok = p.pct(99) < TARGET_P99_MS
            lines.append(f"| {p.label} (`{p.path.split('?')[0]}`) | {p.pct(50):.1f} ms | {p.pct(99):.1f} ms | "
                         f"{max(p.times_ms):.1f} ms | {p.bytes / 1024:.1f} KB | p99 < {TARGET_P99_MS:.0f} ms: "
                         f"{'met' if ok else 'MISSED'} |")
        ok = b.weight_kb < TARGET_PAGE_KB
        lines.append("")
        lines.append(f"The heaviest page with its stylesheet and script: {b.weight_kb:.1f} KB "
                     f"(target < {TARGET_PAGE_KB:.0f} KB: {'met' if ok else 'MISSED'}).")
        ok = b.idle_rss_kb / 1024 <= TARGET_IDLE_RSS_MB and b.idle_cpu < TARGET_IDLE_CPU
        lines.append(f"The worker idle afterwards ({b.idle_seconds:.0f} s, dashboard on, after serving "
                     f"those pages): {b.idle_rss_kb / 1024:.1f} MB RSS at most, {b.idle_cpu:.2f}% of a core "
                     f"(target ≤ {TARGET_IDLE_RSS_MB:.0f} MB, < {TARGET_IDLE_CPU:.0f}%: "
                     f"{'met' if ok else 'MISSED'}).")
        lines.append("")
    return lines

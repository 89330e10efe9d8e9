"""Scale-out benchmark: 1, 2 and 4 `broadcast worker` processes sharing one send on
PostgreSQL, against the same send on SQLite (1 process), printed side by side. One command:

    python benchmarks/bench_workers.py [--quick] [--recipients N] [--batch 200] [--no-profile]

Every configuration gets a fresh database (a PostgreSQL schema of its own, or a new SQLite file),
N members imported from a generated CSV and one approved message to them (personalised with
{name}, so every text is rendered). Then K real `broadcast worker --poll 0.2` processes are
started against the recording mock gateway in batch mode (`--batch`, pinned to CPU 1 with taskset
where available; BROADCAST_HTTP_BATCH=200, no rate limit), and timed until every delivery is
settled; then they get SIGTERM (each must exit 0), and every recipient must have reached the mock
exactly once.

Printed per configuration: wall time from spawning the workers to the last delivery settled
(process start-up and the freeze of the audience included), the sending rate at the gateway
(first to last message the mock recorded: the steady state), the share each worker sent, and
the ratio to 1 worker on PostgreSQL. Finally one worker on PostgreSQL runs under cProfile (its
database thread included, ``_profiled.py``) and its time is split into: claiming, recording
answers (both on the database thread, overlapping the event loop), the HTTP client, freezing
(rendering + inserting the audience), and waiting (the event loop idle in epoll: the gateway's turn).

PostgreSQL: BROADCAST_TEST_POSTGRES_URL or postgresql+psycopg://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import collections
import cProfile  # noqa: F401  (run in the worker by _profiled.py; imported to fail early if missing)
import csv
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

PG_URL = os.environ.get("BROADCAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SETTLED = ("accepted", "delivered", "failed", "expired", "in_doubt")


def pinned(cmd: list[str], cpu: str) -> list[str]:
    return (["taskset", "-c", cpu] + cmd) if shutil.which("taskset") else cmd


def pg_exec(sql: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(PG_URL)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                         dbname=u.database, autocommit=True) as conn:
        conn.execute(sql)


class Store:
    """A fresh database: a PostgreSQL schema or an SQLite file; ``drop()`` removes it."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp / f'sqlite-{uuid.uuid4().hex[:8]}.db'}"
            self.schema = None
        else:
            self.schema = f"bench_{uuid.uuid4().hex[:12]}"
            pg_exec(f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in PG_URL else "?"
            self.url = f"{PG_URL}{sep}options=-csearch_path%3D{self.schema}"

    def drop(self) -> None:
        if self.schema:
            pg_exec(f"DROP SCHEMA {self.schema} CASCADE")


def base_env(tmp: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCAST_")}
    env.update(BROADCAST_ENV_FILE=str(tmp / "no.env"), BROADCAST_DATA_DIR=str(tmp / "data"),
               BROADCAST_DATABASE_URL=url, BROADCAST_OPERATOR="bench", BROADCAST_QUIET_HOURS="")
    return env


def populate(env: dict[str, str], csv_path: Path) -> int:
    """Import the members (the real importer, in this process) and create + approve one message."""
    from broadcast.config import environment

    with environment(env):
        from broadcast.messages.actions import approve_message
        from broadcast.messages.store import create_message
        from broadcast.recipients.importer import ImportOptions, import_members
        from broadcast.workspace import Workspace

        ws = Workspace.open()
        try:
            import_members(ws, csv_path, ImportOptions(group="全市", create_groups=True))
            created = create_message(ws, text="{name}同志：本周六上午九点在区委党校三楼报告厅集中学习，请准时参加。",
                                     groups=["全市"])
            approve_message(Workspace(ws.settings.model_copy(update={"operator": "审核人"}), ws.engine), created.id)
            return created.id
        finally:
            ws.close()


@dataclass
class Result:
    label: str
    workers: int
    wall_s: float
    send_s: float
    accepted: int
    received: int
    shares: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    worker_cpu_s: float = 0.0  # user + system of the worker processes
    machine_busy: float = 0.0  # share of all CPUs busy (workers, PostgreSQL, the mock) while sending

    @property
    def rate(self) -> float:
        return self.received / self.send_s if self.send_s > 0 else 0.0


class Mock:
    def __init__(self, record: Path) -> None:
        self.record = record
        self.proc = subprocess.Popen(
            pinned([sys.executable, "-m", "broadcast.gateways.mockserver", "--port", "0", "--batch",
                    "--record", str(record)], "1"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), f"mock did not start: {line!r}"
        self.url = f"http://127.0.0.1:{int(line.split()[-1])}/send"

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in self.record.read_text(encoding="utf-8").splitlines() if x.strip()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat ((0, 0) elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def reap(p: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for ``p``; (exit code, its user + system CPU seconds)."""
    give_up = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return p.returncode, ru.ru_utime + ru.ru_stime
        if time.monotonic() > give_up:
            raise TimeoutError(f"worker {p.pid} did not exit")
        time.sleep(0.02)


def open_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM deliveries WHERE status NOT IN ('accepted','delivered','failed','expired','in_doubt')"
        )).scalar_one()


def measure(label: str, kind: str, workers: int, n: int, batch: int, tmp: Path, csv_path: Path,
            profile: Path | None = None) -> Result:
    store = Store(kind, tmp)
    mock = Mock(tmp / f"{label.replace(' ', '_')}.jsonl")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = base_env(tmp, store.url)
        mid = populate(env, csv_path)
        engine = sa.create_engine(store.url)
        env.update(BROADCAST_GATEWAY="http", BROADCAST_HTTP_URL=mock.url, BROADCAST_HTTP_BATCH=str(batch))
        cmd = [sys.executable, "-m", "broadcast", "worker", "--poll", "0.2"]
        if profile is not None:
            cmd = [sys.executable, str(Path(__file__).resolve().parent / "_profiled.py"), str(profile),
                   "worker", "--poll", "0.2"]  # cProfile, the engine's database thread included
        t0 = time.monotonic()
        busy0, total0 = cpu_ticks()
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for _ in range(workers)]
        while True:
            time.sleep(0.05)
            bad = [p for p in procs if p.poll() is not None]
            if bad:
                raise SystemExit(f"{label}: a worker exited ({bad[0].returncode}): "
                                 f"{bad[0].stderr.read().decode()[-2000:] if bad[0].stderr else ''}")
            with engine.connect() as conn:
                total = conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one()
            if total == n and open_count(engine) == 0:
                break
        wall = time.monotonic() - t0
        busy1, total1 = cpu_ticks()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        reaped = [reap(p, 60) for p in procs]
        codes = [c for c, _ in reaped]
        with engine.connect() as conn:
            counts = dict(conn.execute(sa.text(
                "SELECT status, count(*) FROM deliveries WHERE message_id = :m GROUP BY status"), {"m": mid}).all())
            by_pid = dict(conn.execute(sa.text(
                "SELECT r.pid, count(*) FROM delivery_attempts a JOIN runs r ON r.id = a.run_id "
                "WHERE a.outcome = 'accepted' GROUP BY r.pid")).all())
        engine.dispose()
        lines = mock.lines()
        times = sorted(float(x["t"]) for x in lines)  # type: ignore[arg-type]
        per_id = collections.Counter(x["id"] for x in lines)
        assert counts == {"accepted": n}, f"{label}: {counts}"
        assert len(lines) == n and len(per_id) == n, f"{label}: {len(lines)} received, {len(per_id)} distinct"
        assert codes == [0] * workers, f"{label}: exit codes {codes}"
        return Result(label, workers, wall, times[-1] - times[0], counts["accepted"], len(lines),
                      sorted((by_pid.get(p.pid, 0) for p in procs), reverse=True), codes,
                      sum(c for _, c in reaped), (busy1 - busy0) / max(1, total1 - total0))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stderr:
                p.stderr.close()
        mock.stop()
        store.drop()


# -- where the time goes --------------------------------------------------------------------------

CATEGORIES = [  # (label, qualified function names whose cumulative time counts; first match wins)
    ("claim (ledger.claim: one UPDATE … SKIP LOCKED RETURNING transaction; database thread)", ["ledger.py:claim"]),
    ("record answers (ledger.record: UPDATE executemany + attempts INSERT; database thread)", ["ledger.py:record"]),
    ("freeze (render every text + INSERT the audience, one transaction)", ["engine.py:start_message"]),
    ("HTTP client (httpx: build, send, parse the batch; our JSON)", ["http.py:send"]),
    ("heartbeat, recovery, due, settle, deadlines, counts", ["engine.py:_heartbeat", "engine.py:recover",
                                                           "timing.py:due", "timing.py:expire_overdue",
                                                           "engine.py:_settle_messages", "engine.py:_deadlines",
                                                           "engine.py:_next_retry", "ledger.py:counts"]),
    ("idle: event loop waiting in epoll (the gateway's turn, or nothing due)", ["~:<method 'poll' of 'select.epoll' objects>"]),
]


def where_time_goes(profile: Path, wall_s: float) -> list[tuple[str, float]]:
    st = pstats.Stats(str(profile))
    stats = st.stats  # type: ignore[attr-defined]
    found: list[tuple[str, float]] = []
    for label, keys in CATEGORIES:
        secs = 0.0
        for (filename, _line, func), (_cc, _nc, tt, ct, _callers) in stats.items():
            name = f"{Path(filename).name}:{func}"
            if name in keys:
                secs += tt if "poll" in func else ct
        found.append((label, secs))
    return found


def top_functions(profile: Path, n: int = 12) -> list[str]:
    st = pstats.Stats(str(profile))
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # type: ignore[attr-defined]
    return [f"{tt:7.3f} s  {nc:>8}  {Path(f).parent.name}/{Path(f).name}:{func}"
            for (f, _l, func), (_cc, nc, tt, _ct, _c) in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 recipients instead of 50,000")
    ap.add_argument("--recipients", type=int, default=None)
    ap.add_argument("--batch", type=int, default=200, help="BROADCAST_HTTP_BATCH (default 200)")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run of one worker")
    args = ap.parse_args()
    n = args.recipients or (10_000 if args.quick else 50_000)
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(PG_URL)
        psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, dbname=u.database, connect_timeout=3).close()
    except Exception as exc:
        raise SystemExit(f"PostgreSQL not reachable at {PG_URL}: {exc}") from None
    print(f"{n:,} recipients, BROADCAST_HTTP_BATCH={args.batch}, BROADCAST_CONCURRENCY=8 (default), no rate limit; "
          f"mock gateway --batch{' pinned to CPU 1' if shutil.which('taskset') else ' (taskset missing: unpinned)'}; "
          f"{os.cpu_count()} CPUs; PostgreSQL {PG_URL.split('@')[-1]}")
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as d:
        tmp = Path(d)
        csv_path = tmp / "members.csv"
        with csv_path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["姓名", "手机"])
            w.writerows([f"党员{i}", f"139{i:08d}"] for i in range(1, n + 1))
        results = []
        for label, kind, k in (("sqlite, 1 worker", "sqlite", 1), ("postgresql, 1 worker", "postgresql", 1),
                               ("postgresql, 2 workers", "postgresql", 2), ("postgresql, 4 workers", "postgresql", 4)):
            r = measure(label, kind, k, n, args.batch, tmp, csv_path)
            results.append(r)
            print(f"  done: {label}: {r.wall_s:.2f} s", flush=True)
        base = next(r for r in results if r.label == "postgresql, 1 worker")
        print()
        print("| configuration | wall s (spawn → all settled) | msgs/s wall | ratio | msgs/s at gateway (first→last) "
              "| ratio | sent per worker | workers' CPU s | machine busy |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r.label} | {r.wall_s:.2f} | {n / r.wall_s:,.0f} | {base.wall_s / r.wall_s:.2f}× | "
                  f"{r.rate:,.0f} | {r.rate / base.rate:.2f}× | {' / '.join(f'{s:,}' for s in r.shares)} | {r.worker_cpu_s:.2f} | {r.machine_busy:.0%} |")
        if not args.no_profile:
            prof = tmp / "worker.prof"
            r = measure("postgresql, 1 worker, cProfile", "postgresql", 1, n, args.batch, tmp, csv_path, profile=prof)
            print(f"\nWhere one PostgreSQL worker's time goes (cProfile, {r.wall_s:.2f} s wall for the send under the "
                  f"profiler, which slows Python code about 1.5-2×; cumulative seconds; the database thread's "
                  f"claims and records overlap the event loop):")
            for label, secs in where_time_goes(prof, r.wall_s):
                print(f"  {secs:7.2f} s  {label}")
            print("\n  top functions by own time:")
            for line in top_functions(prof):
                print("   ", line)


if __name__ == "__main__":
    main()

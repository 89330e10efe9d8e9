"""Dispatch benchmark. One command:

    python benchmarks/bench_dispatch.py [--quick] [--repeat N]

Everything runs against the project's mock gateway (`python -m broadcast.gateways.mockserver`,
a fresh process per measurement, pinned to CPU 1 with taskset); every client (the `broadcast`
commands and the bare baseline loops) is pinned to CPU 0, so the two never compete for a core. Each
database is built through the CLI: `member import` of a generated CSV, `message new --all`
by one operator and `message approve` by another; every measured send gets its own copy of it.
Throughputs come from the mock's record file (first to last request it recorded), so the engine
and its baselines are measured the same way. Medians of --repeat fresh-process runs; engine and
baseline runs are interleaved so both see the same machine noise.

  (a) one recipient per request: `broadcast run` sending 20,000 messages vs a bare
      httpx.AsyncClient loop at its best concurrency (N=1/8/16/32)    target >= 0.8x
      and, for information, vs a bare aiohttp loop at 64 in flight (the client-side ceiling)
  (b) mock answering after 50 ms, BROADCAST_CONCURRENCY=32           target >= 0.9 x 32/0.05 = 576/s
  (c) 200 recipients per request (mock --batch, BROADCAST_HTTP_BATCH=200): 100,000 deliveries,
      wall time of `broadcast send ID --yes` until all are recorded    target <= 15 s
      (+ the engine's freeze/claim/record phases from an in-process run)
  (d) peak memory (ru_maxrss of the send process; tracemalloc in-process) 100,000 vs 1,000
      recipients                                                       target <= 2x
  (e) BROADCAST_RATE=100 for 30 s (3,000 messages; --quick: 10 s): achieved rate within +-2 %,
      and no sliding 1-s window above rate + burst (the mock's record timestamps)
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBES = str(Path(__file__).resolve().parent / "_dispatch_probes.py")
sys.path.insert(0, str(ROOT / "recipients"))

PY = sys.executable
CPU_SERVER, CPU_CLIENT = "1", "0"
TEXT = "同志们好，{name}，请于明天上午九点到党群服务中心参加主题党日活动。"
SIGNATURE = "【城南新区】"


def pinned(cpu: str, cmd: list[str]) -> list[str]:
    return (["taskset", "-c", cpu] + cmd) if shutil.which("taskset") else cmd


# -- the mock gateway -------------------------------------------------------------------------

@dataclass
class Mock:
    url: str
    record: Path
    proc: subprocess.Popen[str]

    def stamps(self) -> list[float]:
        if not self.record.exists():
            return []
        with open(self.record, encoding="utf-8") as fh:
            return sorted(json.loads(line)["t"] for line in fh if line.strip())


@contextmanager
def mock(tmp: Path, *extra: str) -> Iterator[Mock]:
    record = tmp / f"record-{time.monotonic_ns()}.jsonl"
    proc = subprocess.Popen(
        pinned(CPU_SERVER, [PY, "-m", "broadcast.gateways.mockserver", "--port", "0", "--record", str(record), *extra]),
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the mock did not start: {line!r}")
        yield Mock(f"http://127.0.0.1:{int(line.split()[-1])}/send", record, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def span_rate(stamps: list[float]) -> float:
    """Messages per second from the first to the last recorded request."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def max_window(stamps: list[float], width: float = 1.0) -> int:
    """The most requests in any sliding window [t, t + width) (windows start at a request)."""
    return max((bisect.bisect_left(stamps, t + width) - i for i, t in enumerate(stamps)), default=0)


# -- databases built through the CLI ----------------------------------------------------------

def base_env(tmp: Path, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCAST_")}
    env.update(
        BROADCAST_DATABASE_URL=f"sqlite:///{db}", BROADCAST_ENV_FILE=str(tmp / "nonexistent.env"),
        BROADCAST_DATA_DIR=str(tmp / "data"), BROADCAST_QUIET_HOURS="", BROADCAST_SIGNATURE=SIGNATURE,
        BROADCAST_OPERATOR="bench",
    )
    return env


def cli(env: dict[str, str], *args: str, operator: str | None = None) -> str:
    e = dict(env)
    if operator:
        e["BROADCAST_OPERATOR"] = operator
    out = subprocess.run([PY, "-m", "broadcast", *args], capture_output=True, text=True, env=e, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"broadcast {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


class Databases:
    """One database per recipient count, built once through the CLI; each send works on a copy."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.built: dict[int, tuple[Path, int]] = {}

    def template(self, n: int) -> tuple[Path, int]:
        if n not in self.built:
            import make_samples as ms

            csv = self.tmp / f"members-{n}.csv"
            ms.write_csv(csv, ms.people(n, ms.organisations(65), dup_rate=0.0))
            db = self.tmp / f"template-{n}.db"
            env = base_env(self.tmp, db)
            imported = json.loads(cli(env, "member", "import", str(csv), "--group-column", "所属支部",
                                      "--create-groups", "--json"))
            assert imported["added"] == n, imported
            mid = json.loads(cli(env, "message", "new", "--text", TEXT, "--all", "--json", operator="alice"))["id"]
            status = json.loads(cli(env, "message", "approve", str(mid), "--json", operator="bob"))["status"]
            assert status == "approved", status
            self.built[n] = (db, mid)
        return self.built[n]

    def fresh(self, n: int) -> tuple[dict[str, str], int, Path]:
        src, mid = self.template(n)
        db = self.tmp / f"case-{n}-{time.monotonic_ns()}.db"
        shutil.copyfile(src, db)
        return base_env(self.tmp, db), mid, db


def drop(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


@dataclass
class ProcResult:
    wall_s: float
    maxrss_kb: int
    stdout: str
    stderr: str


def run_measured(cmd: list[str], env: dict[str, str]) -> ProcResult:
    """Run a command to completion; its wall time and its own peak RSS (wait4's rusage)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    # taskset execs the command, so the rusage is the command's own
    return ProcResult(wall, usage.ru_maxrss, stdout, stderr)


def last_json(text: str) -> dict:
    start = text.index("{")
    return json.loads(text[start:])


# -- the measurements -------------------------------------------------------------------------

def engine_run(dbs: Databases, n: int, mock_args: tuple[str, ...] = (), **settings: str) -> dict:
    """`broadcast run --json` on a fresh copy of the n-recipient database; mock-side figures."""
    env, mid, db = dbs.fresh(n)
    try:
        with mock(dbs.tmp, *mock_args) as m:
            env.update(BROADCAST_GATEWAY="http", BROADCAST_HTTP_URL=m.url, **settings)
            r = run_measured(pinned(CPU_CLIENT, [PY, "-m", "broadcast", "run", "--json"]), env)
        stamps = m.stamps()
        report = last_json(r.stdout)
        assert report["accepted"] == n and len(stamps) == n, (report, len(stamps))
        return {"rate": span_rate(stamps), "stamps": stamps, "report": report, "wall_s": r.wall_s,
                "maxrss_kb": r.maxrss_kb}
    finally:
        drop(db)


def client_run(tmp: Path, kind: str, n: int, count: int, mock_args: tuple[str, ...] = (), batch: int = 1) -> dict:
    with mock(tmp, *mock_args) as m:
        out = subprocess.run(pinned(CPU_CLIENT, [PY, PROBES, "client", kind, str(n), str(count), m.url, str(batch)]),
                             capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} N={n} failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    stamps = m.stamps()
    assert len(stamps) == count, (len(stamps), count)
    res["rate"] = span_rate(stamps)
    return res


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float], fmt: str = ",.0f") -> str:
    return f"{format(min(xs), fmt)}-{format(max(xs), fmt)}" if len(xs) > 1 else "1 run"


def have_aiohttp() -> str | None:
    out = subprocess.run([PY, "-c", "import aiohttp; print(aiohttp.__version__)"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def bench_a(dbs: Databases, repeat: int, count: int) -> None:
    print(f"(a) one recipient per request: {count:,} messages, `broadcast run` (BROADCAST_CONCURRENCY=8, the "
          f"default) vs bare client loops, same mock, same JSON body")
    sweep: dict[int, list[float]] = {}
    for n in (1, 8, 16, 32):  # one pass to find the best N
        sweep[n] = [client_run(dbs.tmp, "httpx", n, count)["rate"]]
    best = max(sweep, key=lambda k: sweep[k][0])
    aio = have_aiohttp()
    eng: list[float] = []
    eng_report: list[float] = []
    aio_rates: list[float] = []
    for i in range(repeat):  # interleaved: engine, httpx at its best N, aiohttp
        r = engine_run(dbs, count)
        eng.append(r["rate"])
        eng_report.append(count / r["report"]["elapsed_s"])
        if i > 0:
            sweep[best].append(client_run(dbs.tmp, "httpx", best, count)["rate"])
        if aio:
            aio_rates.append(client_run(dbs.tmp, "aiohttp", 64, count)["rate"])
    for n, rates in sweep.items():
        print(f"    bare httpx.AsyncClient N={n:<2} {med(rates):8,.0f} msgs/s ({spread(rates)}, {len(rates)} run(s))"
              + ("   <- best" if n == best else ""))
    e, b = med(eng), med(sweep[best])
    print(f"    broadcast run            {e:8,.0f} msgs/s ({spread(eng)}), first to last request at the mock; "
          f"{med(eng_report):,.0f}/s by the run's own elapsed_s (freeze and start included)")
    print(f"    ratio to httpx N={best}: {e / b:.2f}x   target >= 0.8x: {verdict(e / b >= 0.8)}")
    if aio:
        a = med(aio_rates)
        print(f"    bare aiohttp {aio} N=64   {a:8,.0f} msgs/s ({spread(aio_rates)}); "
              f"ratio broadcast/aiohttp {e / a:.2f}x (the client-side ceiling, for information)")
    else:
        print("    aiohttp: not installed and could not be imported; no client-side ceiling measured "
              "(pip install aiohttp into this venv)")


def bench_b(dbs: Databases, repeat: int, count: int) -> None:
    target = 0.9 * 32 / 0.05
    print(f"\n(b) mock answering after 50 ms, BROADCAST_CONCURRENCY=32: {count:,} messages")
    eng, base = [], []
    for _ in range(repeat):
        eng.append(engine_run(dbs, count, ("--delay-ms", "50"), BROADCAST_CONCURRENCY="32")["rate"])
        base.append(client_run(dbs.tmp, "httpx", 32, count, ("--delay-ms", "50"))["rate"])
    e, b = med(eng), med(base)
    print(f"    broadcast run            {e:8,.0f} msgs/s ({spread(eng)})   target >= {target:.0f}: {verdict(e >= target)}")
    print(f"    bare httpx N=32          {b:8,.0f} msgs/s ({spread(base)}); ratio {e / b:.2f}x; "
          f"Little's-law ceiling 640/s: ratio {e / 640:.2f}x")


def send_measured(dbs: Databases, n: int, batch: int) -> dict:
    env, mid, db = dbs.fresh(n)
    try:
        with mock(dbs.tmp, "--batch") as m:
            env.update(BROADCAST_GATEWAY="http", BROADCAST_HTTP_URL=m.url, BROADCAST_HTTP_BATCH=str(batch))
            r = run_measured(pinned(CPU_CLIENT, [PY, "-m", "broadcast", "send", str(mid), "--yes", "--json"]), env)
        stamps = m.stamps()
        report = last_json(r.stdout)
        assert report["accepted"] == n and len(stamps) == n, (report["accepted"], len(stamps))
        return {"wall_s": r.wall_s, "maxrss_kb": r.maxrss_kb, "elapsed_s": report["elapsed_s"], "rate": span_rate(stamps)}
    finally:
        drop(db)


def engine_probe(dbs: Databases, n: int, batch: int, trace: bool) -> dict:
    env, mid, db = dbs.fresh(n)
    try:
        with mock(dbs.tmp, "--batch") as m:
            env.update(BROADCAST_GATEWAY="http", BROADCAST_HTTP_URL=m.url, BROADCAST_HTTP_BATCH=str(batch))
            args = [PY, PROBES, "engine", str(mid)] + (["trace"] if trace else [])
            r = run_measured(pinned(CPU_CLIENT, args), env)
        return last_json(r.stdout.strip().splitlines()[-1])
    finally:
        drop(db)


def bench_c(dbs: Databases, repeat: int, n: int) -> list[dict]:
    print(f"\n(c) 200 recipients per request (mock --batch, BROADCAST_HTTP_BATCH=200): {n:,} deliveries")
    sends, base = [], []
    for _ in range(repeat):
        sends.append(send_measured(dbs, n, 200))
        base.append(client_run(dbs.tmp, "httpx", 8, n, ("--batch",), batch=200))
    wall = med([s["wall_s"] for s in sends])
    print(f"    `broadcast send ID --yes` wall time {wall:6.2f} s ({spread([s['wall_s'] for s in sends], '.2f')} s), "
          f"all {n:,} recorded by the mock   target <= 15 s: {verdict(wall <= 15)}")
    print(f"        the engine's own elapsed_s {med([s['elapsed_s'] for s in sends]):6.2f} s; "
          f"at the mock {med([s['rate'] for s in sends]):,.0f} msgs/s first to last request")
    bs = med([b["seconds"] for b in base])
    print(f"    bare httpx N=8 loop, same batches: {bs:6.2f} s ({n / bs:,.0f} msgs/s); ratio of the engine's "
          f"elapsed_s to it {med([s['elapsed_s'] for s in sends]) / bs:.1f}x (the engine also freezes and records)")
    p = engine_probe(dbs, n, 200, trace=False)
    sp, calls = p["spent"], p["calls"]
    print(f"    phases (in-process `send`, one run, {p['seconds']:.2f} s): freeze {sp['freeze']:.2f} s; "
          f"claim {sp['claim']:.2f} s in {calls['claim']} calls; record {sp['record']:.2f} s in {calls['record']} "
          f"calls; gateway calls {sp['gateway_calls']:.2f} s summed over {calls['gateway_calls']} requests "
          f"(overlapping); first request after {p['to_first_send']:.2f} s")
    return sends


def bench_d(dbs: Databases, repeat: int, big_runs: list[dict], n_big: int, n_small: int) -> None:
    print(f"\n(d) peak memory, {n_big:,} vs {n_small:,} recipients (`broadcast send`, batch gateway of 200)")
    small = [send_measured(dbs, n_small, 200)["maxrss_kb"] for _ in range(repeat)]
    big = [r["maxrss_kb"] for r in big_runs]
    rb, rs = med(big), med(small)
    print(f"    ru_maxrss of the send process: {n_small:,} -> {rs / 1024:6.1f} MiB, {n_big:,} -> {rb / 1024:6.1f} MiB: "
          f"ratio {rb / rs:.2f}x   target <= 2x: {verdict(rb / rs <= 2)}")
    ts = engine_probe(dbs, n_small, 200, trace=True)["tracemalloc_peak"]
    tb = engine_probe(dbs, n_big, 200, trace=True)["tracemalloc_peak"]
    print(f"    tracemalloc peak (in-process, from before the send): {ts / 2**20:6.1f} MiB vs {tb / 2**20:6.1f} MiB: "
          f"ratio {tb / ts:.2f}x")


def bench_e(dbs: Databases, seconds: int) -> None:
    rate = 100
    n = rate * seconds
    print(f"\n(e) BROADCAST_RATE={rate}: {n:,} messages (~{seconds} s), one per request")
    r = engine_run(dbs, n, BROADCAST_RATE=str(rate))
    stamps = r["stamps"]
    got = span_rate(stamps)
    burst = max(1.0, rate * 0.010)  # the default BROADCAST_BURST
    worst = max_window(stamps)
    dev = got / rate - 1
    print(f"    achieved {got:7.2f} msgs/s over {stamps[-1] - stamps[0]:.1f} s: {dev * 100:+.2f} % of {rate}/s   "
          f"target within +-2 %: {verdict(abs(dev) <= 0.02)}")
    print(f"    most in any sliding 1-s window: {worst} (burst {burst:g})   target <= rate + burst = "
          f"{rate + burst:g}: {verdict(worst <= rate + burst)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs, fewer messages in (a), (b) and (e)")
    ap.add_argument("--repeat", type=int, default=None, help="fresh-process runs per figure (default 3, --quick 1)")
    ap.add_argument("--only", default="abcde", help="which items to run, e.g. 'ac'")
    args = ap.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    count_a = 20_000
    count_b = 2_000 if args.quick else 5_000
    seconds_e = 10 if args.quick else 30
    if not shutil.which("taskset"):
        print("warning: taskset not found; the mock and the clients are not pinned to separate CPUs")
    print(f"broadcast dispatch benchmark: median of {repeat} fresh-process run(s); mock on CPU {CPU_SERVER}, "
          f"clients on CPU {CPU_CLIENT}; {os.cpu_count()} CPUs\n")
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as d:
        dbs = Databases(Path(d))
        t0 = time.perf_counter()
        if "a" in args.only:
            bench_a(dbs, repeat, count_a)
        big_runs: list[dict] = []
        if "b" in args.only:
            bench_b(dbs, repeat, count_b)
        if "c" in args.only:
            big_runs = bench_c(dbs, repeat, 100_000)
        if "d" in args.only:
            if not big_runs:
                big_runs = [send_measured(dbs, 100_000, 200) for _ in range(repeat)]
            bench_d(dbs, repeat, big_runs, 100_000, 1_000)
        if "e" in args.only:
            bench_e(dbs, seconds_e)
        print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rate-limit benchmark: what a configured rate costs when it binds and when it does not. One command:

    python benchmarks/bench_rate.py [--rates 100,1000,10000,1000000] [--recipients 5000] [--quick]

Same method as bench_dispatch.py (its helpers are reused): the project's mock gateway in a fresh
process per measurement, pinned to CPU 1; `broadcast send ID --yes` pinned to CPU 0; each
database built through the CLI and copied per send; throughput from the mock's record file
(first to last request). BROADCAST_CONCURRENCY=8, one recipient per request.

For no limit and for each rate, in the same run: `broadcast send` of N recipients (at a low rate
min(N, rate x 5), so each run lasts a few seconds), --repeat rounds of all cases interleaved. Per
rate: the median throughput, its ratio to min(rate, the median unlimited throughput) (target
>= 0.95), and where the limit binds the busiest sliding 1-s window of the mock's record timestamps
in any round vs rate + burst. A send that does not finish within
--timeout seconds is stopped and counts what the mock recorded by then.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dispatch import (
    CPU_CLIENT,
    CPU_SERVER,
    PY,
    ROOT,
    Databases,
    drop,
    max_window,
    mock,
    pinned,
    span_rate,
)

TARGET = 0.95


def send(dbs: Databases, n: int, timeout: float, **settings: str) -> dict:
    """`broadcast send` of a fresh n-recipient database against the fast mock; mock-side figures."""
    env, mid, db = dbs.fresh(n)
    try:
        with mock(dbs.tmp) as m:
            env.update(BROADCAST_GATEWAY="http", BROADCAST_HTTP_URL=m.url, BROADCAST_CONCURRENCY="8", **settings)
            t0 = time.perf_counter()
            proc = subprocess.Popen(pinned(CPU_CLIENT, [PY, "-m", "broadcast", "send", str(mid), "--yes", "--json"]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
            try:
                _, err = proc.communicate(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    _, err = proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                timed_out = True
            wall = time.perf_counter() - t0
            if proc.returncode != 0 and not timed_out:
                raise RuntimeError(f"broadcast send exited {proc.returncode}:\n{err[-2000:]}")
        stamps = m.stamps()
        return {"n": n, "sent": len(stamps), "rate": span_rate(stamps), "stamps": stamps, "wall_s": wall,
                "timed_out": timed_out}
    finally:
        drop(db)


def burst_of(rate: float, burst: str | None) -> float:
    return float(burst) if burst else max(1.0, rate * 0.010)  # the default BROADCAST_BURST


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="100,1000,10000,1000000", help="comma-separated BROADCAST_RATE values")
    ap.add_argument("--recipients", type=int, default=None, help="recipients per send (default 5000, --quick 2000)")
    ap.add_argument("--burst", default=None, help="BROADCAST_BURST for every limited send (default: the default)")
    ap.add_argument("--timeout", type=float, default=60.0, help="stop a send after this many seconds")
    ap.add_argument("--repeat", type=int, default=None, help="rounds of every case, interleaved (default 3, --quick 1)")
    ap.add_argument("--quick", action="store_true", help="fewer recipients, low rates capped at 3 s, one round")
    args = ap.parse_args()
    n = args.recipients or (2000 if args.quick else 5000)
    secs = 3 if args.quick else 5
    repeat = args.repeat or (1 if args.quick else 3)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    print(f"broadcast rate-limit benchmark: mock on CPU {CPU_SERVER}, `broadcast send` on CPU {CPU_CLIENT}; "
          f"{os.cpu_count()} CPUs; BROADCAST_CONCURRENCY=8; burst {args.burst or 'default'}; "
          f"{repeat} round(s) of every case, interleaved, median throughput\n")
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as d:
        dbs = Databases(Path(d))
        free_runs: list[dict] = []
        runs: dict[float, list[dict]] = {rate: [] for rate in rates}
        for _ in range(repeat):  # interleaved: a slow spell of the machine hits every case alike
            free_runs.append(send(dbs, n, args.timeout))
            for rate in rates:
                settings = {"BROADCAST_RATE": f"{rate:g}"}
                if args.burst:
                    settings["BROADCAST_BURST"] = args.burst
                runs[rate].append(send(dbs, min(n, max(100, int(rate * secs))), args.timeout, **settings))
        unlimited = statistics.median(r["rate"] for r in free_runs)
        print(f"{'rate':>10} {'sent':>11} {'msgs/s':>9} {'ratio':>6} {'busiest 1 s':>12} {'rate+burst':>11}  verdict")
        print(f"{'none':>10} {min(r['sent'] for r in free_runs):>5}/{n:<5} {unlimited:>9,.0f} {'':>6} "
              f"{max(max_window(r['stamps']) for r in free_runs):>12} {'':>11}")
        ok_all = True
        for rate in rates:
            k = min(n, max(100, int(rate * secs)))
            sent = min(r["sent"] for r in runs[rate])
            got = statistics.median(r["rate"] for r in runs[rate])
            ratio = got / min(rate, unlimited) if sent > 1 else 0.0
            bound = rate + burst_of(rate, args.burst)
            binds = rate < unlimited
            worst = max(max_window(r["stamps"]) for r in runs[rate])  # the worst round, not the median
            ok = ratio >= TARGET and sent == k and (not binds or worst <= bound)
            ok_all &= ok
            window = f"{worst:>12} {bound:>11,.0f}" if binds else f"{worst:>12} {'(unbound)':>11}"
            timed_out = any(r["timed_out"] for r in runs[rate])
            print(f"{rate:>10,.0f} {sent:>5}/{k:<5} {got:>9,.0f} {ratio:>6.2f} {window}  "
                  f"{'PASS' if ok else 'FAIL'}{' (timed out)' if timed_out else ''}")
    print(f"\ntarget: ratio to min(rate, unlimited) >= {TARGET}; busiest window <= rate + burst where the limit binds")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())

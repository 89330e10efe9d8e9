"""Contact-list import benchmark. One command:

    python benchmarks/bench_import.py [--rows 100000] [--repeat 3]

Prints, from one run on this machine:
  * 100k-row CSV and .xlsx imports (targets: CSV <= 5 s, xlsx <= 20 s), each with the ratio to a
    baseline measured in the same run: raw sqlite3 executemany of the same rows (CSV), and bare
    openpyxl read-only iteration of the same file (xlsx);
  * peak Python memory (tracemalloc) of an import of 10k vs 100k rows (target: no growth, ratio ~1);
  * `broadcast --help` vs `python -c 'import typer'` wall time (target <= 3x).
Each import runs in a fresh process on a fresh database; the median of --repeat runs is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipients"))

IMPORT_PROBE = r"""
import json, sys, time, tracemalloc
from broadcast.workspace import Workspace
from broadcast.recipients.importer import ImportOptions, import_members
ws = Workspace.open()
trace = sys.argv[2] == "trace"
if trace:
    tracemalloc.start()
t0 = time.perf_counter()
s = import_members(ws, sys.argv[1], ImportOptions(group_column="所属支部", create_groups=True))
elapsed = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1] if trace else 0
import resource
print(json.dumps({"seconds": elapsed, "peak": peak, "added": s.added, "rows": s.rows,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

SQLITE_BASELINE = r"""
import csv, json, sqlite3, sys, time
t0 = time.perf_counter()
db = sqlite3.connect(sys.argv[2])
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, phone TEXT UNIQUE, name TEXT, grp TEXT, title TEXT, notes TEXT)")
with open(sys.argv[1], encoding="utf-8", newline="") as fh:
    r = csv.reader(fh); next(r)
    db.executemany("INSERT OR IGNORE INTO m (phone, name, grp, title, notes) VALUES (?,?,?,?,?)",
                   (("+86" + row[2], row[1], row[3], row[4], row[5]) for row in r))
db.commit()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

XLSX_BASELINE = r"""
import json, sys, time
from openpyxl import load_workbook
t0 = time.perf_counter()
wb = load_workbook(sys.argv[1], read_only=True, data_only=True)
n = sum(1 for _ in wb.worksheets[0].iter_rows(values_only=True))
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": n}))
"""


def run_probe(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_once(path: Path, tmp: Path, trace: bool = False) -> dict:
    db = tmp / f"bench-{time.monotonic_ns()}.db"
    env = {**os.environ, "BROADCAST_DATABASE_URL": f"sqlite:///{db}", "BROADCAST_ENV_FILE": str(tmp / "none.env")}
    try:
        return run_probe(IMPORT_PROBE, str(path), "trace" if trace else "time", env=env)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)


def median_of(fn, repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import make_samples as ms

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        orgs = ms.organisations(65)
        files = {}
        for n in (10_000, args.rows):
            files[("csv", n)] = tmp / f"m{n}.csv"
            ms.write_csv(files[("csv", n)], ms.people(n, orgs))
        files[("xlsx", args.rows)] = tmp / f"m{args.rows}.xlsx"
        ms.write_xlsx(files[("xlsx", args.rows)], ms.people(args.rows, orgs))
        big_csv, big_xlsx = files[("csv", args.rows)], files[("xlsx", args.rows)]

        print(f"broadcast import benchmark: {args.rows:,} rows, median of {args.repeat} fresh-process runs\n")
        csv_s = median_of(lambda: import_once(big_csv, tmp)["seconds"], args.repeat)
        raw_s = median_of(lambda: run_probe(SQLITE_BASELINE, str(big_csv), str(tmp / f"raw{time.monotonic_ns()}.db"))["seconds"], args.repeat)
        print(f"CSV  import   {csv_s:6.2f} s  ({args.rows / csv_s:8,.0f} rows/s)  target <= 5 s: {'OK' if csv_s <= 5 else 'MISSED'}")
        print(f"     baseline {raw_s:6.2f} s  raw sqlite3 csv->executemany of the same rows; ratio {csv_s / raw_s:.1f}x")
        xlsx_s = median_of(lambda: import_once(big_xlsx, tmp)["seconds"], args.repeat)
        read_s = median_of(lambda: run_probe(XLSX_BASELINE, str(big_xlsx))["seconds"], args.repeat)
        print(f"xlsx import   {xlsx_s:6.2f} s  ({args.rows / xlsx_s:8,.0f} rows/s)  target <= 20 s: {'OK' if xlsx_s <= 20 else 'MISSED'}")
        print(f"     baseline {read_s:6.2f} s  bare openpyxl read-only iteration; ratio {xlsx_s / read_s:.2f}x")

        small = import_once(files[("csv", 10_000)], tmp, trace=True)
        large = import_once(big_csv, tmp, trace=True)
        print(f"\npeak Python memory (tracemalloc) 10k rows {small['peak'] / 2**20:6.1f} MiB, "
              f"{args.rows // 1000}k rows {large['peak'] / 2**20:6.1f} MiB: ratio {large['peak'] / small['peak']:.2f}x "
              f"(target ~1: no growth with the row count)")
        print(f"peak RSS of the process       10k rows {small['maxrss_kb'] / 1024:6.1f} MiB, "
              f"{args.rows // 1000}k rows {large['maxrss_kb'] / 1024:6.1f} MiB: ratio {large['maxrss_kb'] / small['maxrss_kb']:.2f}x")

        exe = [sys.executable, "-m", "broadcast", "--help"]
        typer_only = [sys.executable, "-c", "import typer"]
        for _ in range(2):
            wall(exe), wall(typer_only)
        help_s, typer_s = [], []
        for _ in range(15):  # interleaved, so both see the same machine noise
            help_s.append(wall(exe))
            typer_s.append(wall(typer_only))
        h, t = statistics.median(help_s), statistics.median(typer_s)
        print(f"\nstart-up: `broadcast --help` {h * 1000:5.0f} ms vs `python -c 'import typer'` {t * 1000:5.0f} ms: "
              f"ratio {h / t:.2f}x (target <= 3x): {'OK' if h / t <= 3 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

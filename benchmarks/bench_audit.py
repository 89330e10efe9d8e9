"""Auditor benchmark. One command:

    python benchmarks/bench_audit.py [--deliveries 1000000] [--entries 100000]

Builds a database with N generated deliveries (65 groups, ~60 days, every status) and M audit
entries, then times, as whole `broadcast` processes (start-up included), median of 3:
  * `broadcast report --by day` and `--by group`            target <= 2 s each
  * `broadcast log --status failed --since D` first page     target <= 1 s
  * `broadcast audit verify` over M entries                   target <= 5 s
Baselines from the same run: the bare `python -c "import typer"` start-up, and a raw sqlite3
GROUP BY over the same table (what the report cannot beat), printed as ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

STATES = ["delivered"] * 80 + ["accepted"] * 8 + ["failed"] * 6 + ["expired"] * 2 + ["in_doubt"] + ["queued"] * 3


def build(db: Path, deliveries: int, entries: int) -> None:
    env = {**os.environ, "BROADCAST_DATABASE_URL": f"sqlite:///{db}", "BROADCAST_ENV_FILE": "/nonexistent"}
    subprocess.run([sys.executable, "-m", "broadcast", "db", "migrate"], env=env, check=True, capture_output=True)
    rng = random.Random(1)
    con = sqlite3.connect(db)
    now = datetime(2026, 11, 27, tzinfo=UTC)
    messages = 60
    con.executemany(
        "INSERT INTO messages (id, body, template, signature, category, status, author, approver, reject_reason, "
        "status_reason, created_at, updated_at, scheduled_at, send_after, schedule_id, target_all, optout_skipped, "
        "started_at) VALUES (?, 'x', NULL, '', 'notice', 'sent', 'a', 'b', NULL, NULL, ?, ?, NULL, NULL, NULL, 1, 3, ?)",
        [(m, now.isoformat(" "), now.isoformat(" "),
          (now - timedelta(days=messages - m)).replace(tzinfo=None).isoformat(" ")) for m in range(1, messages + 1)])
    per = deliveries // messages

    def rows():
        for m in range(1, messages + 1):
            day = now - timedelta(days=messages - m)
            for i in range(per):
                st = STATES[rng.randrange(len(STATES))]
                q = (day + timedelta(seconds=i * 0.05)).replace(tzinfo=None).isoformat(" ")
                yield (m, "real", None, f"+86138{m:02d}{i:06d}", "某某", f"支部{i % 65}", "【城南新区】text", 1, st, 1,
                       None, None, None, "simulator", f"p{m}-{i}", "EMPTY" if st == "failed" else None, None, q,
                       q if st in ("accepted", "delivered") else None, None, q)

    con.executemany(
        "INSERT INTO deliveries (message_id, kind, member_id, phone, name, group_name, text, parts, status, attempts, "
        "next_attempt_at, claimed_by, lease_until, gateway, provider_id, error_code, error_text, queued_at, sent_at, "
        "delivered_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows())
    con.commit()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from broadcast.audit.trail import GENESIS, canonical, entry_hash

    prev, batch = GENESIS, []
    for i in range(1, entries + 1):
        at = now - timedelta(seconds=entries - i)
        details = canonical({"n": i, "phone": "138****1234"})
        h = entry_hash(i, at, "office", "member.edit", f"member:{i}", details, prev)
        batch.append((i, at.replace(tzinfo=None).isoformat(" "), "office", "member.edit", f"member:{i}", details, prev, h))
        prev = h
    con.executemany("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?)", batch)
    con.execute("INSERT INTO audit_head VALUES ('main', ?, ?)", (entries, prev))
    con.commit()
    con.close()


def timed(cmd: list[str], env: dict[str, str], first_line: bool = False) -> float:
    t0 = time.perf_counter()
    if first_line:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert p.stdout is not None
        p.stdout.readline()
        elapsed = time.perf_counter() - t0
        p.kill()
        p.wait()
        return elapsed
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deliveries", type=int, default=1_000_000)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "audit.db"
        t0 = time.perf_counter()
        build(db, args.deliveries, args.entries)
        print(f"built {args.deliveries:,} deliveries and {args.entries:,} audit entries in {time.perf_counter() - t0:.1f} s\n")
        env = {**os.environ, "BROADCAST_DATABASE_URL": f"sqlite:///{db}", "BROADCAST_ENV_FILE": "/nonexistent",
               "COLUMNS": "200"}
        b = [sys.executable, "-m", "broadcast"]
        base = statistics.median(timed([sys.executable, "-c", "import typer"], env) for _ in range(5))

        def raw_group_by() -> float:
            t = time.perf_counter()
            con = sqlite3.connect(db)
            con.execute("SELECT group_name, count(*), sum(status='delivered') FROM deliveries GROUP BY group_name").fetchall()
            con.close()
            return time.perf_counter() - t

        raw = statistics.median(raw_group_by() for _ in range(args.repeat))
        since = (datetime(2026, 11, 27) - timedelta(days=7)).date().isoformat()
        cases = [
            ("report --by day", b + ["report", "--by", "day", "--json"], 2.0, False),
            ("report --by group", b + ["report", "--by", "group", "--json"], 2.0, False),
            (f"log --status failed --since {since} (first page)", b + ["log", "--status", "failed", "--since", since],
             1.0, True),
            (f"audit verify ({args.entries:,} entries)", b + ["audit", "verify"], 5.0, False),
        ]
        print(f"baselines: `python -c 'import typer'` {base:.3f} s; raw sqlite3 GROUP BY group_name {raw:.3f} s\n")
        for label, cmd, target, first in cases:
            t = statistics.median(timed(cmd, env, first) for _ in range(args.repeat))
            print(f"{label:55s} {t:6.2f} s  target <= {target:.0f} s: {'OK' if t <= target else 'MISSED'}"
                  f"   ({t / base:4.1f}x start-up, {t / raw:4.1f}x raw GROUP BY)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Channels benchmark: 10,000 members over three channels with fallback, beside the SMS-only send of
the same audience. One command:

    python benchmarks/bench_channels.py [--members 10000] [--repeat 3]

One database of ``--members`` people is built in-process (a generated CSV through the real
importer): 40 % have a WeCom userid, 30 % (others) an email address, the rest only a phone. Each
measured send copies it, creates the message there and runs ``broadcast run --json`` in a fresh
process, timed from start to exit, its peak memory read from the kernel (``os.wait4``'s
``ru_maxrss`` of that process):

* **sms**: the message to everyone by SMS (the simulator gateway, no latency, no failures);
* **channels**: the same message with ``--channel wecom-app,email,sms --fallback sms``: WeCom
  through the real ``wecom-app`` gateway against the local WeCom stand-in
  (``broadcast.gateways.wecom_standin``), which does not know one userid in eight; email through the
  real ``email`` gateway against a local SMTP server (aiosmtpd, in this process), which refuses one
  address in six with 550; SMS for the rest and for every refused one. The channels are sent side
  by side, SMS included, then the refused ones by SMS (``dispatch.channel_pass``); the simulator
  takes 500 SMS a second.

Printed: per mode the median wall time and peak RSS of --repeat interleaved runs, and the ratio of
channels to sms; and, per channels run, that nobody got it twice (WeCom, email and SMS counted by
person from the servers' own records and the ledger) and that every refused one went by SMS. No
target is set by the issue; the figures go in the closing note.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXT = "{name}同志：今日精神早餐：不忘初心，牢记使命。"
CORP, SECRET, AGENT = "ww-bench", "bench-corp-secret", 1000002


def build(tmp: Path, n: int) -> tuple[Path, set[str], set[str]]:
    """The template database; returns (its path, WeCom userids the stand-in knows, emails refused)."""
    from broadcast.config import load_settings
    from broadcast.recipients.groups import add_group
    from broadcast.recipients.importer import ImportOptions, import_members
    from broadcast.workspace import Workspace

    db = tmp / "template.db"
    ws = Workspace.open(load_settings(database_url=f"sqlite:///{db}", operator="bench", data_dir=tmp))
    try:
        add_group(ws, "党工委")
        path = tmp / "members.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["姓名", "手机"])
            for i in range(n):
                w.writerow([f"党员{i}", f"139{i:08d}"])
        import_members(ws, path, ImportOptions(group="党工委"))
        known: set[str] = set()
        refused: set[str] = set()
        with ws.engine.begin() as conn:
            import sqlalchemy as sa

            for mid, in conn.execute(sa.text("SELECT id FROM members ORDER BY id")).all():
                k = mid % 10
                if k < 4:
                    user = f"u{mid}"
                    conn.execute(sa.text("UPDATE members SET wecom = :u WHERE id = :i"), {"u": user, "i": mid})
                    if mid % 20:
                        known.add(user)
                elif k < 7:
                    addr = f"m{mid}@chengnan.example.org"
                    conn.execute(sa.text("UPDATE members SET email = :e WHERE id = :i"), {"e": addr, "i": mid})
                    if mid % 20 == 5:
                        refused.add(addr)
    finally:
        ws.close()
    return db, known, refused


class Mail:
    def __init__(self, refused: set[str]) -> None:
        self.refused, self.received = refused, []  # type: ignore[var-annotated]

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refused:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of that one process, its stdout."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{cmd} exited {proc.returncode}: {text[-500:]}")
    return took, usage.ru_maxrss / 1024, text


def one_run(tmp: Path, template: Path, mode: str, known: set[str], refused: set[str], i: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from broadcast.config import load_settings
    from broadcast.gateways.wecom_standin import WeComStandIn
    from broadcast.messages.store import create_message
    from broadcast.workspace import Workspace

    db = tmp / f"{mode}-{i}.db"
    shutil.copy(template, db)
    url = f"sqlite:///{db}"
    ws = Workspace.open(load_settings(database_url=url, operator="bench", data_dir=tmp, require_approval=False,
                                      quiet_hours=""))  # due now, whatever the hour
    try:
        create_message(ws, text=TEXT, groups=["党工委"], channels="wecom-app,email,sms" if mode == "channels" else None,
                       fallback="sms" if mode == "channels" else None)
    finally:
        ws.close()
    from aiosmtpd.controller import Controller

    mail = Mail(refused)
    with socket.socket() as probe:  # a free port (aiosmtpd's controller cannot take 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mail, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with WeComStandIn(CORP, SECRET, AGENT, known) as standin:
            env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCAST_")}
            env.update(BROADCAST_DATABASE_URL=url, BROADCAST_DATA_DIR=str(tmp), BROADCAST_ENV_FILE=str(tmp / "no.env"),
                       BROADCAST_GATEWAY="simulator", BROADCAST_SIMULATOR_LATENCY_MS="0",
                       BROADCAST_SIMULATOR_FAILURE_RATE="0", BROADCAST_SIMULATOR_UNDELIVERED_RATE="0",
                       BROADCAST_QUIET_HOURS="", BROADCAST_OPERATOR="bench",
                       BROADCAST_WECOM_APP_CORP_ID=CORP, BROADCAST_WECOM_APP_CORP_SECRET=SECRET,
                       BROADCAST_WECOM_APP_AGENT_ID=str(AGENT), BROADCAST_WECOM_APP_ENDPOINT=standin.url,
                       BROADCAST_EMAIL_HOST="127.0.0.1", BROADCAST_EMAIL_PORT=str(port),
                       BROADCAST_EMAIL_SECURITY="none", BROADCAST_EMAIL_FROM_ADDRESS="城南新区 <notice@chengnan.example.org>")
            took, rss, _ = measured([sys.executable, "-m", "broadcast", "run", "--json"], env)
            wecom = [u for u, _ in standin.received]
    finally:
        controller.stop()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        channels = dict(conn.execute(sa.text("SELECT channel, count(*) FROM deliveries GROUP BY channel")).all())
        sms = conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE channel = 'sms' "
                                   "AND status IN ('accepted', 'delivered')")).scalar_one()
        open_ = conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE status IN "
                                     "('queued', 'sending', 'retry_wait', 'in_doubt')")).scalar_one()
        total = conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one()
    engine.dispose()
    reached = len(wecom) + len(mail.received) + sms
    twice = len(wecom) - len(set(wecom)) + len(mail.received) - len(set(mail.received))
    return {"mode": mode, "s": took, "rss": rss, "channels": channels, "wecom": len(wecom), "email": len(mail.received),
            "sms": sms, "reached": reached, "total": total, "twice": twice, "open": open_}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        template, known, refused = build(tmp, a.members)
        print(f"{a.members:,} members built in {time.perf_counter() - t0:.1f} s; WeCom stand-in knows {len(known):,} "
              f"userids, the SMTP server refuses {len(refused):,} addresses")
        runs: dict[str, list[dict[str, Any]]] = {"sms": [], "channels": []}
        for i in range(a.repeat):
            for mode in ("sms", "channels"):
                r = one_run(tmp, template, mode, known, refused, i)
                runs[mode].append(r)
                print(f"  {mode:8} run {i + 1}: {r['s']:.1f} s, {r['rss']:.0f} MB; deliveries {r['channels']}; reached: "
                      f"WeCom {r['wecom']:,}, email {r['email']:,}, SMS {r['sms']:,} = {r['reached']:,} of {a.members:,}; "
                      f"twice {r['twice']}, open {r['open']}")
                if r["reached"] != a.members or r["twice"] or r["open"]:
                    print("  !! somebody was missed, reached twice, or left open")
                    return 1
        med = {m: (statistics.median(r["s"] for r in rs), statistics.median(r["rss"] for r in rs)) for m, rs in runs.items()}
        print(f"\nmedian of {a.repeat}: SMS only {med['sms'][0]:.1f} s, {med['sms'][1]:.0f} MB; three channels with "
              f"fallback {med['channels'][0]:.1f} s, {med['channels'][1]:.0f} MB")
        print(f"ratio channels / SMS only: time {med['channels'][0] / med['sms'][0]:.2f}x, "
              f"peak memory {med['channels'][1] / med['sms'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak: half an hour of mornings compressed into a few minutes, with everything going wrong.

20 messages to 2,000 members each, scheduled 90 s apart from 07:30; a real ``broadcast worker``
with its receipts endpoint up sends them through the real mock gateway, which answers 500, 429,
resets connections and truncates answers now and then; every few seconds the worker is SIGKILLed
and started again with the clock (``BROADCAST_NOW``) three minutes on, so more messages fall due;
a thread pushes delivery receipts for what the gateway received, all along, into whichever
incarnation is up. At the end every member is accounted for exactly once per message, nobody got a
message twice beyond the deliveries held in doubt, the worker's memory stayed flat, and the audit
trail verifies.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import sending as S

pytestmark = pytest.mark.slow

MEMBERS = 2000
MESSAGES = 20
KILLS = 10
START = datetime(2026, 12, 1, 7, 30)
assert timedelta(seconds=90 * (MESSAGES - 1)) <= timedelta(minutes=3 * KILLS)  # all due by the last clock


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ReceiptPusher(threading.Thread):
    """Pushes a ``delivered`` receipt (the simulator's format) for each message the mock gateway
    received, in batches, to whatever endpoint is up; what was not acknowledged is pushed again."""

    def __init__(self, mock: S.Mock, port: int) -> None:
        super().__init__(daemon=True)
        self.mock, self.url = mock, f"http://127.0.0.1:{port}/simulator"
        self.stop = threading.Event()
        self.acked: set[int] = set()
        self.refused = 0

    def run(self) -> None:
        done_lines = 0
        backlog: list[int] = []
        while not self.stop.is_set():
            lines = self.mock.lines()
            backlog += [int(x["id"]) for x in lines[done_lines:]]
            done_lines = len(lines)
            while backlog and not self.stop.is_set():
                batch, backlog = backlog[:200], backlog[200:]
                body = json.dumps([{"delivery_id": i, "status": "delivered", "code": "DELIVRD"} for i in batch]).encode()
                req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=5) as answer:
                        ok = answer.status == 200
                except (urllib.error.URLError, OSError):
                    ok = False
                if ok:
                    self.acked.update(batch)
                else:  # the endpoint is down with its worker: push again later
                    self.refused += 1
                    backlog = batch + backlog
                    self.stop.wait(0.2)
            self.stop.wait(0.2)


def test_soak_killed_worker_faulty_gateway_concurrent_receipts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from broadcast.messages.actions import approve_message
    from broadcast.messages.store import create_message
    from broadcast.workspace import Workspace

    monkeypatch.setenv("BROADCAST_NOW", START.isoformat())
    ws = S.open_workspace(monkeypatch)
    monkeypatch.setenv("BROADCAST_NOW", START.isoformat())
    try:
        S.populate(ws, MEMBERS, tmp_path)
        approver = Workspace(ws.settings.model_copy(update={"operator": S.APPROVER}), ws.engine)
        ids = []
        for k in range(MESSAGES):
            at = (START + timedelta(seconds=90 * k)).replace(tzinfo=ZoneInfo(ws.settings.timezone))
            mid = create_message(ws, text=f"精神早餐 第{k + 1}期：学而时习之。", groups=[S.GROUP], at=at).id
            approve_message(approver, mid)
            ids.append(mid)
    finally:
        ws.close()

    rng = random.Random(20261204)
    port = _free_port()
    faults = ("--batch", "--fail-every", "37", "--status-429-every", "53", "--retry-after", "0",
              "--reset-every", "101", "--malformed-every", "151", "--delay-ms", "2")
    with S.Mock(tmp_path / "received.jsonl", *faults) as mock:
        pusher = ReceiptPusher(mock, port)
        pusher.start()
        memory: list[tuple[int, int]] = []  # (RSS once sending, RSS when killed), per incarnation
        try:
            for j in range(KILLS + 1):
                now = START + timedelta(minutes=3 * j)
                env = mock.env(BROADCAST_HTTP_BATCH="50", BROADCAST_NOW=now.isoformat(), BROADCAST_LEASE_S="5")
                log = (tmp_path / f"worker-{j}.err").open("w")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "broadcast", "worker", "--poll", "0.2", "--receipts-port", str(port)],
                    env=env, stdout=subprocess.DEVNULL, stderr=log)
                try:
                    if j < KILLS:
                        # the baseline once this incarnation is sending (imports done, first requests
                        # out), not at a fixed second: on a loaded machine start-up alone takes longer
                        sent_before = _lines(tmp_path / "received.jsonl")
                        S.wait_for(lambda: _lines(tmp_path / "received.jsonl") > sent_before + 50, 20, step=0.05)
                        first = _rss_kib(proc.pid)
                        time.sleep(rng.uniform(1.5, 4.0))
                        memory.append((first, _rss_kib(proc.pid)))
                        proc.send_signal(signal.SIGKILL)
                        proc.wait(timeout=10)
                        continue
                    # the last incarnation, not killed: until nothing is open, then told to stop
                    assert S.wait_for(lambda: S.open_count() == 0 and _all_frozen(ids), 240, step=0.5), S.status_counts()
                    deadline = time.monotonic() + 60
                    while len(pusher.acked) < mock.count() and time.monotonic() < deadline:
                        time.sleep(0.2)
                    time.sleep(1.0)  # the applier's next sweep
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(timeout=60) == 0, (tmp_path / f"worker-{j}.err").read_text()[-2000:]
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    log.close()
        finally:
            pusher.stop.set()
            pusher.join(10)

        received = mock.by_id()

    # every member accounted for once per message, in a final state with its reason
    final = {"accepted", "delivered", "failed", "in_doubt"}
    in_doubt = 0
    for mid in ids:
        rows = S.deliveries(mid)
        assert len(rows) == MEMBERS and len({r.phone for r in rows.values()}) == MEMBERS, mid
        states = {r.status for r in rows.values()}
        assert states <= final, (mid, S.status_counts(mid))
        assert all(r.error_code for r in rows.values() if r.status in ("failed", "in_doubt")), mid
        in_doubt += sum(r.status == "in_doubt" for r in rows.values())
        status, _ = S.message_status(mid)
        held = any(r.status == "in_doubt" for r in rows.values())
        assert status == ("sending" if held else "sent"), (mid, status)

    # nobody got a message twice, beyond the deliveries held in doubt
    twice = sum(n - 1 for n in received.values() if n > 1)
    assert twice <= in_doubt, (twice, in_doubt)
    # what the gateway received and was pushed back as a receipt is delivered, unless in doubt or failed
    everything = {i: r for mid in ids for i, r in S.deliveries(mid).items()}
    assert set(received) <= set(everything)
    stuck = [i for i in pusher.acked if everything[i].status == "accepted"]
    assert stuck == [], stuck[:10]

    # memory flat within each incarnation: no growth with the deliveries it sent
    grown = [(a, b) for a, b in memory if a and b > a * 1.5 + 20_000]
    assert grown == [], memory
    at_kill = [b for _, b in memory if b]
    assert max(at_kill) <= 1.3 * min(at_kill), memory  # and flat from one incarnation to the next

    verify = S.broadcast(S.base_env(), "audit", "verify")
    assert verify.code == 0, verify

    kinds = {s: sum(r.status == s for r in everything.values()) for s in sorted(final)}
    print(f"\n[soak] {MESSAGES} messages x {MEMBERS}; {KILLS} kills; received {sum(received.values())}, "
          f"twice {twice}, in doubt {in_doubt}; states {kinds}; receipts pushed {len(pusher.acked)} "
          f"(refused while down: {pusher.refused}); RSS once sending / at kill (KiB) {memory}")


def _all_frozen(ids: list[int]) -> bool:
    """Every message has started (its audience frozen)."""
    eng = S.db()
    try:
        import sqlalchemy as sa

        with eng.connect() as conn:
            n = conn.execute(sa.select(sa.func.count(sa.distinct(S.D.c.message_id))).where(
                S.D.c.message_id.in_(ids))).scalar_one()
    finally:
        eng.dispose()
    return bool(n == len(ids))


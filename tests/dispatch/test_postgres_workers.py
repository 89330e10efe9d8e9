"""Several workers on one PostgreSQL database share one send, and one of them keeps dying.

Four real ``broadcast worker`` processes, pointed at a fresh PostgreSQL schema, send one approved
10,000-recipient message through the real recording mock gateway (``--record``: one JSON line per
accepted message, flushed before the answer, so the file is what people received). One of the
four is killed with SIGKILL and restarted, again and again, while the send runs. When every
delivery is settled, the workers get SIGTERM and must exit 0. Then:

* **nothing lost**: every delivery is accepted (or delivered/failed/expired/in_doubt) and every
  accepted one reached the gateway exactly once;
* **no duplicates beyond in-doubt**: an ``in_doubt`` delivery reached the gateway at most once,
  and there are at most kills × the engine's hold window (1.5 × BROADCAST_CONCURRENCY × batch) of them;
* **the work was shared**: every worker that was never killed recorded a share of the attempts
  (``delivery_attempts.run_id`` → ``runs.pid``);
* **one rate for all**: no sliding one-second window at the gateway (the mock's stamps) holds
  more than BROADCAST_RATE + burst messages, nor any 5 s window more than 5 × rate + burst, and
  the average stays at or below the rate.

Three quick tests pin the races the four workers found (a second transaction holds the message
row while a worker starts, finishes or expires the same message), and one more has four ``broadcast
run`` processes send 12 messages to the same 30 people under a per-number daily cap of 3.

PostgreSQL only (the SQLite run of this BOTH_STORES module is skipped: several processes on one
SQLite file serialise on its write lock, see ``benchmarks/bench_workers.py``). Without a server
the PostgreSQL run is skipped too, saying why (``postgres_problem()``).
"""

from __future__ import annotations

import collections
import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery, DeliveryAttempt, Run
from tests.helpers import sending as S
from tests.helpers.stores import postgres_problem

pytestmark = [pytest.mark.postgres, pytest.mark.both_stores]

N = 10_000
WORKERS = 4
RATE = 400.0
BURST = max(1.0, RATE * 0.010)  # the default burst: about 10 ms of tokens
CONCURRENCY = 8
BATCH = 1  # BROADCAST_HTTP_BATCH
HOLD_WINDOW = CONCURRENCY * BATCH * 3 // 2  # Dispatcher.hold_limit
KILLS = 6
SEED = 8
GATEWAY_DELAY_MS = 20  # the mock answers 20 ms after recording: requests are in flight when a kill lands

D, A, R = Delivery.__table__, DeliveryAttempt.__table__, Run.__table__
SETTLED = ("accepted", "delivered", "failed", "expired", "in_doubt")


def _max_in_window(times: list[float], window_s: float = 1.0) -> tuple[int, float]:
    """The most events in any half-open window [t, t + window_s), and where it starts."""
    ts = sorted(times)
    best, at, j = 0, 0.0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - window_s:
            j += 1
        if i - j + 1 > best:
            best, at = i - j + 1, ts[j]
    return best, at


def _populate(tmp: Path, n: int) -> int:
    """n members in one group (a generated CSV through the real importer) and one approved
    message to them; returns the message id."""
    from broadcast.messages.actions import approve_message
    from broadcast.messages.store import create_message
    from broadcast.recipients.importer import ImportOptions, import_members
    from broadcast.workspace import Workspace

    path = tmp / "members.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["姓名", "手机"])
        w.writerows([f"党员{i}", f"139{i:08d}"] for i in range(1, n + 1))
    opened = Workspace.open()
    ws = Workspace(opened.settings.model_copy(update={"quiet_hours": ""}), opened.engine)  # due now, at any hour
    try:
        summary = import_members(ws, path, ImportOptions(group="全市", create_groups=True))
        assert summary.added == n, summary.to_dict()
        created = create_message(ws, text="{name}同志：明天上午九点在三楼会议室学习，请准时参加。", groups=["全市"])
        approver = Workspace(ws.settings.model_copy(update={"operator": "审核人"}), ws.engine)
        assert approve_message(approver, created.id).status == "approved"
        return created.id
    finally:
        opened.close()


class _Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("a")
        self.proc = subprocess.Popen([sys.executable, "-m", "broadcast", "worker", "--poll", "0.2"], env=env,
                                     stdout=self.log, stderr=self.log)

    @property
    def pid(self) -> int:
        return self.proc.pid


def _open(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(D).where(D.c.status.not_in(SETTLED))).scalar_one()


def _recorded_by(engine: sa.Engine, pid: int) -> int:
    """Answers recorded by the runs of process ``pid``."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(A).join(R, R.c.id == A.c.run_id)
                            .where(R.c.pid == pid)).scalar_one()


def _stranded_by(engine: sa.Engine, pid: int) -> int:
    """Deliveries left in ``sending`` by the runs of process ``pid``."""
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(D).join(R, R.c.id == D.c.claimed_by)
                            .where(D.c.status == "sending", R.c.pid == pid)).scalar_one()


def _postgres_only(store: str) -> None:
    if not store.startswith("postgresql"):
        pytest.skip("PostgreSQL only: several workers on one SQLite file serialise on its write lock")
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)


@pytest.mark.slow
def test_four_workers_share_a_send_while_one_keeps_dying(store: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _postgres_only(store)
    t_start = time.monotonic()
    mid = _populate(tmp_path, N)
    engine = sa.create_engine(store)
    mock = S.Mock(tmp_path / "received.jsonl", "--delay-ms", str(GATEWAY_DELAY_MS))
    env = dict(os.environ)
    env.pop("BROADCAST_NOW", None)
    env.update(BROADCAST_DATABASE_URL=store, BROADCAST_GATEWAY="http", BROADCAST_HTTP_URL=mock.url,
               BROADCAST_HTTP_BATCH=str(BATCH), BROADCAST_QUIET_HOURS="", BROADCAST_RATE=str(RATE),
               BROADCAST_CONCURRENCY=str(CONCURRENCY), BROADCAST_RETRY_BASE_S="0.05", BROADCAST_RETRY_MAX_S="0.5",
               PYTHONUNBUFFERED="1")
    rng = random.Random(SEED)
    workers: list[_Worker] = []
    kills: list[dict[str, Any]] = []
    try:
        workers = [_Worker(env, tmp_path / f"worker{i}.log") for i in range(WORKERS)]
        assert _wait(lambda: mock.size() > 0, 60), "no message reached the gateway"
        # worker 0 dies, again and again, while the send runs: each incarnation is SIGKILLed at a
        # random moment after it has started sending (its first answer recorded), then restarted
        while len(kills) < KILLS:
            victim = workers[0]
            assert _wait(lambda v=victim: _recorded_by(engine, v.pid) > 0 or not _open(engine), 60), \
                f"worker 0 never sent\n{_logs(tmp_path)}"
            time.sleep(rng.uniform(0.0, 0.6))
            if not _open(engine):
                break
            for i, w in enumerate(workers):
                assert w.proc.poll() is None, f"worker {i} exited by itself ({w.proc.returncode})\n{_logs(tmp_path)}"
            victim.proc.kill()
            victim.proc.wait(timeout=10)
            kills.append({"pid": victim.pid, "stranded": _stranded_by(engine, victim.pid)})
            workers[0] = _Worker(env, tmp_path / "worker0.log")
        assert _wait(lambda: _open(engine) == 0, 90), "deliveries still open"
        for w in workers:
            assert w.proc.poll() is None, f"worker {w.pid} exited by itself ({w.proc.returncode})\n{_logs(tmp_path)}"
            w.proc.send_signal(signal.SIGTERM)
        codes = [w.proc.wait(timeout=30) for w in workers]
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
            w.log.close()
        mock.stop()
    assert codes == [0] * WORKERS, f"exit codes {codes}\n{_logs(tmp_path)}"
    assert len(kills) == KILLS, f"only {len(kills)} kills landed before the send ended: {kills}"
    assert sum(k["stranded"] for k in kills) > 0, f"no kill caught a request in flight: {kills}"

    with engine.connect() as conn:
        status = dict(conn.execute(sa.select(D.c.id, D.c.status).where(D.c.message_id == mid, D.c.kind == "real")).all())
        by_pid = collections.Counter(dict(conn.execute(
            sa.select(R.c.pid, sa.func.count()).select_from(A).join(R, R.c.id == A.c.run_id)
            .where(A.c.outcome == "accepted").group_by(R.c.pid)).all()))
    engine.dispose()
    lines = mock.lines()
    received = collections.Counter(int(x["id"]) for x in lines)
    counts = collections.Counter(status.values())
    in_doubt = [i for i, s in status.items() if s == "in_doubt"]
    survivors = [w.pid for w in workers[1:]]
    peak, peak_at = _max_in_window([x["t"] for x in lines])
    peak5, _ = _max_in_window([x["t"] for x in lines], 5.0)
    times = sorted(x["t"] for x in lines)
    with capsys.disabled():
        print(f"\n[4 workers, PostgreSQL] {len(kills)} kills (stranded {[k['stranded'] for k in kills]}); "
              f"states {dict(counts)}; received {len(lines)} ({len(received)} distinct); accepted per surviving "
              f"worker {[by_pid[p] for p in survivors]}, by the killed one's incarnations "
              f"{sum(v for p, v in by_pid.items() if p not in survivors)}; busiest 1-s window {peak} "
              f"(rate + burst {RATE + BURST:g}), 5-s window {peak5}; achieved {(len(times) - 1) / (times[-1] - times[0]):.1f}/s; "
              f"test {time.monotonic() - t_start:.1f} s")

    # nothing lost: every delivery settled; every accepted one reached the gateway exactly once
    assert len(status) == N
    assert set(counts) <= set(SETTLED), counts
    assert counts["accepted"] + counts["in_doubt"] == N, counts  # the mock refuses nothing
    assert all(received[i] == 1 for i, s in status.items() if s == "accepted"), \
        [(i, received[i]) for i, s in status.items() if s == "accepted" and received[i] != 1][:20]
    # no duplicates beyond the in-doubt ones, each received at most once, within the bound
    assert set(received) <= set(status), set(received) - set(status)
    assert all(received[i] <= 1 for i in in_doubt), [(i, received[i]) for i in in_doubt if received[i] > 1]
    assert len(lines) == len(received), "a delivery reached the gateway twice"
    assert len(in_doubt) <= len(kills) * HOLD_WINDOW, (len(in_doubt), kills)
    assert len({x["to"] for x in lines}) == len(lines)  # and so no phone twice
    # the work was shared: every worker that lived through the send recorded a share
    assert all(by_pid[p] > N // (4 * WORKERS) for p in survivors), (by_pid, survivors)
    # one rate for all four: never more than rate + burst in any sliding second at the gateway,
    # nor in any 5 s, nor on average
    assert peak <= RATE + BURST, f"{peak} messages in the second from {peak_at}"
    assert peak5 <= 5 * RATE + BURST, peak5
    assert (len(times) - 1) / (times[-1] - times[0]) <= RATE


def _logs(tmp: Path) -> str:
    """The end of each worker's output, leaving out the per-pass lines."""
    out = []
    for i in range(WORKERS):
        text = (tmp / f"worker{i}.log").read_text(errors="replace")
        out.append(f"--- worker {i}\n" + "\n".join(x for x in text.splitlines() if not x.startswith("pass:"))[-3000:])
    return "\n".join(out)


def _wait(predicate: Any, timeout: float, step: float = 0.1) -> bool:
    return S.wait_for(predicate, timeout, step)


# -- the two races four workers found on PostgreSQL (SQLite's write lock hides them) ------------------


def _engine_and_message(tmp: Path, n: int = 50) -> tuple[Any, int]:
    from broadcast.dispatch.dispatcher import Dispatcher
    from broadcast.gateways import registry
    from broadcast.workspace import Workspace

    mid = _populate(tmp, n)
    ws = Workspace.open()
    cls = registry.load("simulator")
    return Dispatcher(ws, cls(registry.load_settings(cls))), mid


def _while_another_holds(store: str, sql: str, fn: Any) -> Any:
    """Run ``fn`` in a thread while another transaction has run ``sql`` (locking the message row)
    and not yet committed; commit it 0.3 s later. Returns what ``fn`` returned (or raised)."""
    import threading

    other = sa.create_engine(store)
    out: dict[str, Any] = {}

    def call() -> None:
        try:
            out["value"] = fn()
        except Exception as exc:
            out["error"] = exc

    try:
        with other.begin() as conn:
            conn.execute(sa.text(sql))
            t = threading.Thread(target=call)
            t.start()
            time.sleep(0.3)
        t.join(30)
    finally:
        other.dispose()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_a_message_another_worker_is_starting_is_left_to_it(store: str, tmp_path: Path) -> None:
    """Two workers see the message approved at once: the second waits for the first's freeze and
    then leaves it alone (without the row lock it froze the audience again: a unique violation, or
    a ConflictError on the status change; either killed the worker)."""
    _postgres_only(store)
    engine, mid = _engine_and_message(tmp_path)
    try:
        frozen = _while_another_holds(store, f"UPDATE messages SET status = 'sending' WHERE id = {mid}",
                                      lambda: engine.start_message(mid))
        assert frozen == 0
    finally:
        engine.ws.close()


def test_a_message_another_worker_is_finishing_is_left_to_it(store: str, tmp_path: Path) -> None:
    """Two workers settle the same finished message at once: the second sees it sent (without the
    row lock its status change found the row changed: ConflictError, and the worker died)."""
    from broadcast.dispatch.run_report import RunReport

    _postgres_only(store)
    engine, mid = _engine_and_message(tmp_path)
    try:
        engine.start_message(mid)
        with engine.ws.engine.begin() as conn:
            conn.execute(D.update().where(D.c.message_id == mid).values(status="accepted"))
        report = RunReport()
        _while_another_holds(store, f"UPDATE messages SET status = 'sent' WHERE id = {mid}",
                             lambda: engine._settle_messages([mid], report))
        assert report.completed == []
    finally:
        engine.ws.close()


def test_a_message_another_worker_is_expiring_is_left_to_it(store: str, tmp_path: Path) -> None:
    """Two workers expire the same overdue message at once: the second skips it (without the row
    lock: ConflictError, and the worker died)."""
    from broadcast.messages.timing import expire_overdue

    _postgres_only(store)
    engine, mid = _engine_and_message(tmp_path)
    try:
        with engine.ws.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE messages SET send_after = now() - interval '30 days' WHERE id = {mid}"))
        expired = _while_another_holds(store, f"UPDATE messages SET status = 'expired' WHERE id = {mid}",
                                       lambda: expire_overdue(engine.ws))
        assert expired == []
    finally:
        engine.ws.close()


@pytest.mark.slow  # starts processes
def test_per_number_cap_holds_across_four_processes(store: str, tmp_path: Path) -> None:
    """Four ``broadcast run`` processes send 12 messages to the same 30 people at once under
    BROADCAST_MAX_PER_NUMBER_PER_DAY=3: every phone received exactly 3 at the gateway, never more
    and never fewer, and the other 9 deliveries of each are failed with ``cap``, none silently
    dropped. (Claims go in id order, so two processes rarely decide on one phone at the same
    instant here; that race is pinned, on both stores, by test_engine's
    ``test_per_number_cap_decided_by_two_workers_at_once``.)"""
    from broadcast.messages.actions import approve_message
    from broadcast.messages.store import create_message
    from broadcast.workspace import Workspace

    _postgres_only(store)
    people, messages, cap = 30, 12, 3
    _populate(tmp_path, people)  # message 1
    opened = Workspace.open()
    ws = Workspace(opened.settings.model_copy(update={"quiet_hours": ""}), opened.engine)
    approver = Workspace(ws.settings.model_copy(update={"operator": "审核人"}), ws.engine)
    try:
        for i in range(2, messages + 1):
            created = create_message(ws, text=f"第{i}条：{{name}}同志，明天上午九点学习。", groups=["全市"])
            assert approve_message(approver, created.id).status == "approved"
    finally:
        opened.close()
    mock = S.Mock(tmp_path / "received.jsonl", "--delay-ms", str(GATEWAY_DELAY_MS))
    env = dict(os.environ)
    env.pop("BROADCAST_NOW", None)
    env.update(BROADCAST_DATABASE_URL=store, BROADCAST_GATEWAY="http", BROADCAST_HTTP_URL=mock.url,
               BROADCAST_QUIET_HOURS="", BROADCAST_MAX_PER_NUMBER_PER_DAY=str(cap), BROADCAST_CONCURRENCY="4",
               BROADCAST_MAX_ERROR_RATE="1")
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "broadcast", "run", "--json"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        mock.stop()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
    engine = sa.create_engine(store)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(D.c.phone, D.c.status, D.c.error_code).where(D.c.kind == "real")).all()
    finally:
        engine.dispose()
    received = collections.Counter(x["to"] for x in mock.lines())
    assert len(rows) == people * messages
    assert set(received.values()) == {cap} and len(received) == people, received
    assert collections.Counter((s, c if s == "failed" else "") for _, s, c in rows) == {
        ("accepted", ""): people * cap, ("failed", "cap"): people * (messages - cap)}

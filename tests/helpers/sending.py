"""Helpers for the fault-injection tests: a populated workspace, an approved message, the real mock
SMS gateway as a subprocess, and real ``broadcast`` subprocesses pointed at it.

Everything here works on the test's own database (``BROADCAST_DATABASE_URL`` from the autouse
``isolated_env`` fixture), read through ``os.environ`` at call time.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery, DeliveryAttempt

D = Delivery.__table__
A = DeliveryAttempt.__table__

GROUP = "一支部"
TEXT = "明天上午九点在三楼会议室学习，请准时参加。"
APPROVER = "审核人"


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a ``broadcast`` subprocess: the test's isolated env, never quiet hours,
    the real clock, fast retries; ``extra`` on top (use "" to set a variable empty)."""
    env = dict(os.environ)
    env.pop("BROADCAST_NOW", None)
    env.update(
        BROADCAST_GATEWAY="http",
        BROADCAST_QUIET_HOURS="",
        BROADCAST_RETRY_BASE_S="0.05",
        BROADCAST_RETRY_MAX_S="0.5",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def open_workspace(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Any:
    """A workspace on the test's database (set up by the autouse ``isolated_env``) with no quiet
    hours and the real clock, set through ``monkeypatch`` so nothing leaks into other tests."""
    from broadcast.workspace import Workspace

    monkeypatch.delenv("BROADCAST_NOW", raising=False)
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    return Workspace.open(**overrides)


def phone(i: int) -> str:
    """The i-th test number (national format; E.164 is ``+86`` + this)."""
    return f"139{i:08d}"


def populate(ws: Any, n: int, tmp: Path, group: str = GROUP) -> list[str]:
    """Import ``n`` members into ``group`` (created) through the real importer; returns their
    E.164 phones."""
    from broadcast.recipients.importer import ImportOptions, import_members

    path = tmp / f"members-{n}.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["姓名", "手机"])
        for i in range(1, n + 1):
            w.writerow([f"党员{i}", phone(i)])
    summary = import_members(ws, path, ImportOptions(group=group, create_groups=True))
    assert summary.added == n, summary.to_dict()
    return [f"+86{phone(i)}" for i in range(1, n + 1)]


def approved_message(ws: Any, text: str = TEXT, group: str = GROUP) -> int:
    """Create a message to ``group`` (by the workspace's operator) and approve it (by another one)."""
    from broadcast.messages.actions import approve_message
    from broadcast.messages.store import create_message
    from broadcast.workspace import Workspace

    created = create_message(ws, text=text, groups=[group])
    approver = Workspace(ws.settings.model_copy(update={"operator": APPROVER}), ws.engine)
    info = approve_message(approver, created.id)
    assert info.status == "approved", info
    return created.id


def prepared_message(monkeypatch: pytest.MonkeyPatch, tmp: Path, n: int) -> tuple[int, list[str]]:
    """``n`` members in one group and an approved message to them, on the test's database:
    (message id, their E.164 phones)."""
    ws = open_workspace(monkeypatch)
    try:
        phones = populate(ws, n, tmp)
        return approved_message(ws), phones
    finally:
        ws.close()


# -- the mock gateway -------------------------------------------------------------------------


class Mock:
    """``python -m broadcast.gateways.mockserver`` as a subprocess, recording to ``record``."""

    def __init__(self, record: Path, *args: str) -> None:
        self.record = record
        self.args = args
        self.log = record.with_suffix(".stderr")
        with self.log.open("w") as err:  # Python 3.11 logs a harmless CancelledError if stopped mid-request
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broadcast.gateways.mockserver", "--port", "0", "--record", str(record), *args],
                stdout=subprocess.PIPE, stderr=err, text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), f"mock did not start: {line!r}"
        self.port = int(line.split()[-1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/send"

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(BROADCAST_HTTP_URL=self.url, **extra)

    def lines(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        out = []
        for raw in self.record.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                out.append(json.loads(raw))
        return out

    def count(self) -> int:
        """Messages recorded so far (cheap: counts lines)."""
        if not self.record.exists():
            return 0
        with self.record.open("rb") as f:
            return sum(1 for _ in f)

    def size(self) -> int:
        """Bytes recorded so far (cheapest progress signal: a stat)."""
        try:
            return self.record.stat().st_size
        except FileNotFoundError:
            return 0

    def by_id(self) -> collections.Counter[int]:
        return collections.Counter(int(x["id"]) for x in self.lines())

    def by_phone(self) -> collections.Counter[str]:
        return collections.Counter(x["to"] for x in self.lines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- broadcast subprocesses -------------------------------------------------------------------


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-3000:]}>"


def broadcast(env: dict[str, str], *args: str, timeout: float = 120.0) -> Result:
    """Run ``python -m broadcast ARGS`` to completion."""
    p = subprocess.run([sys.executable, "-m", "broadcast", *args], env=env, capture_output=True, text=True,
                       timeout=timeout, check=False)
    return Result(p.returncode, p.stdout, p.stderr)


def spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start ``python -m broadcast ARGS`` (output to files in the caller's hands: DEVNULL here)."""
    return subprocess.Popen([sys.executable, "-m", "broadcast", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def run_until_done(env: dict[str, str], *, max_runs: int = 10, timeout: float = 120.0) -> list[Result]:
    """``broadcast run --json`` until nothing is left open (retries due later are picked up by the
    next run); each must exit 0 or 3."""
    results = []
    for _ in range(max_runs):
        r = broadcast(env, "run", "--json", timeout=timeout)
        assert r.code in (0, 3), r
        results.append(r)
        if not open_count():
            return results
    raise AssertionError(f"still open after {max_runs} runs: {status_counts()}")


# -- the database, read directly -----------------------------------------------------------------


def db() -> sa.Engine:
    return sa.create_engine(os.environ["BROADCAST_DATABASE_URL"])


@dataclass
class Row:
    id: int
    phone: str
    status: str
    attempts: int
    error_code: str | None
    provider_id: str | None
    outcomes: list[str] = field(default_factory=list)
    codes: list[str | None] = field(default_factory=list)
    times: list[Any] = field(default_factory=list)


def deliveries(message_id: int | None = None) -> dict[int, Row]:
    """Every real delivery (of one message, or all) with its attempts in order."""
    eng = db()
    try:
        with eng.connect() as conn:
            q = sa.select(D.c.id, D.c.phone, D.c.status, D.c.attempts, D.c.error_code, D.c.provider_id).where(
                D.c.kind == "real")
            if message_id is not None:
                q = q.where(D.c.message_id == message_id)
            rows = {r.id: Row(r.id, r.phone, r.status, r.attempts, r.error_code, r.provider_id) for r in conn.execute(q)}
            for a in conn.execute(sa.select(A.c.delivery_id, A.c.outcome, A.c.code, A.c.at).order_by(A.c.id)):
                if a.delivery_id in rows:
                    row = rows[a.delivery_id]
                    row.outcomes.append(a.outcome)
                    row.codes.append(a.code)
                    row.times.append(a.at)
    finally:
        eng.dispose()
    return rows


def status_counts(message_id: int | None = None) -> dict[str, int]:
    return dict(collections.Counter(r.status for r in deliveries(message_id).values()))


def open_count() -> int:
    eng = db()
    try:
        with eng.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(D).where(
                D.c.status.in_(("queued", "sending", "retry_wait")))).scalar_one()
    finally:
        eng.dispose()


def count_where(status: str) -> int:
    eng = db()
    try:
        with eng.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(D).where(D.c.status == status)).scalar_one()
    finally:
        eng.dispose()


def sending_now(started: bool = False) -> set[tuple[int, int]]:
    """(delivery id, attempt) of every delivery in ``sending``: one claim each. ``started``:
    only those whose request was stamped as starting (a crash leaves those in doubt)."""
    eng = db()
    cond = [D.c.status == "sending"] + ([D.c.request_at.is_not(None)] if started else [])
    try:
        with eng.connect() as conn:
            return {(i, n) for i, n in conn.execute(sa.select(D.c.id, D.c.attempts).where(*cond))}
    finally:
        eng.dispose()


def message_status(message_id: int) -> tuple[str, str | None]:
    from broadcast.db.models import Message

    m = Message.__table__
    eng = db()
    try:
        with eng.connect() as conn:
            row = conn.execute(sa.select(m.c.status, m.c.status_reason).where(m.c.id == message_id)).one()
    finally:
        eng.dispose()
    return row.status, row.status_reason


SETTLED = ("accepted", "delivered", "failed", "expired", "in_doubt")


def max_in_window(times: Sequence[float], window_s: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window_s) (sliding over every event)."""
    ts = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - window_s:
            j += 1
        best = max(best, i - j + 1)
    return best


def wait_for(predicate: Any, timeout: float, step: float = 0.005) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(step)
    return False


def chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]

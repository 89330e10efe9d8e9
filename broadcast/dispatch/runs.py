"""Runs: which process owns which claimed deliveries, and whether it is still alive.

Every `broadcast run`/`worker`/`send` registers a row (host, pid, the pid's start time) and
renews a heartbeat and the leases of its claimed deliveries while it works. Another run can then
tell a dead owner: on the same host at once (the pid is gone, or now belongs to another process),
elsewhere when the heartbeat is older than the lease.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast.db.dispatch_models import SENDING, Delivery, Run
from broadcast.db.engine import transaction
from broadcast.db.types import table

runs_t = table(Run)
deliveries_t = table(Delivery)
HOST = socket.gethostname()


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (Linux), to tell a reused pid; '' where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def is_alive(pid: int, pid_start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not pid_start or process_start(pid) in ("", pid_start)


@dataclass
class RunHandle:
    id: str
    kind: str


def start_run(engine: Engine, kind: str, operator: str, now: datetime) -> RunHandle:
    run = RunHandle(str(uuid.uuid4()), kind)
    pid = os.getpid()
    with transaction(engine, write=True) as conn:
        conn.execute(runs_t.insert().values(
            id=run.id, host=HOST, pid=pid, pid_start=process_start(pid), kind=kind, operator=operator,
            started_at=now, heartbeat_at=now,
        ))
    return run


def heartbeat(engine: Engine, run: RunHandle, now: datetime, lease: timedelta) -> None:
    """Renew the run's heartbeat and the leases of the deliveries it is sending."""
    with transaction(engine, write=True) as conn:
        conn.execute(runs_t.update().where(runs_t.c.id == run.id).values(heartbeat_at=now))
        conn.execute(
            deliveries_t.update()
            .where(deliveries_t.c.claimed_by == run.id, deliveries_t.c.status == SENDING)
            .values(lease_until=now + lease)
        )


def finish_run(engine: Engine, run: RunHandle, now: datetime) -> None:
    with transaction(engine, write=True) as conn:
        conn.execute(runs_t.update().where(runs_t.c.id == run.id).values(finished_at=now, heartbeat_at=now))


def dead_owners(engine: Engine, now: datetime, lease: timedelta) -> list[str]:
    """Ids of runs that still own deliveries in ``sending`` but are gone."""
    owners = (
        sa.select(deliveries_t.c.claimed_by).where(deliveries_t.c.status == SENDING).distinct().subquery()
    )
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(owners.c.claimed_by, runs_t.c.host, runs_t.c.pid, runs_t.c.pid_start,
                      runs_t.c.heartbeat_at, runs_t.c.finished_at)
            .outerjoin(runs_t, runs_t.c.id == owners.c.claimed_by)
        ).all()
    dead = []
    for run_id, host, pid, pid_start, heartbeat_at, finished_at in rows:
        if run_id is None:
            continue
        if host is None or finished_at is not None:
            dead.append(run_id)
        elif host == HOST and pid != os.getpid() and not is_alive(pid, pid_start):
            dead.append(run_id)
        elif heartbeat_at + lease < now:
            dead.append(run_id)
    return dead

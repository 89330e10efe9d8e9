"""The per-number daily cap on claimed rows (``BROADCAST_MAX_PER_NUMBER_PER_DAY``): who may be sent
to now, decided per phone across every process, and the rest failed with reason ``cap``."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast.db.dispatch_models import ACCEPTED, DELIVERED, IN_DOUBT, SENDING
from broadcast.db.engine import transaction
from broadcast.dispatch.ledger import Claimed, _fail, deliveries_t

_CAP_LOCK_CLASS = 0x62630001  # "bc" 1: the advisory-lock namespace of the per-number cap
_CAP_LOCK_SLOTS = 64  # phones share this many locks: a claim of thousands takes at most 64


def _phone_slot(phone: str) -> int:
    """The advisory lock a phone's cap decision takes: a stable hash into _CAP_LOCK_SLOTS. One
    lock per phone would put a lock-table entry per claimed row (PostgreSQL's table holds
    max_locks_per_transaction × max_connections, 6,400 by default: four workers claiming 2,400
    rows each would run out); phones that share a slot only wait for each other briefly."""
    return zlib.crc32(phone.encode()) % _CAP_LOCK_SLOTS


def apply_cap(engine: Engine, run_id: str, gateway: str, rows: Sequence[Claimed], cap: int, day_start: datetime,
              now: datetime, text: str) -> tuple[list[Claimed], list[Claimed]]:
    """Split claimed rows into (may send, over the cap), failing the latter with reason ``cap``.

    A phone's count includes every real delivery that went or may have gone to it since
    ``day_start`` (SENDING, ACCEPTED, DELIVERED, IN_DOUBT), other runs' claims included. The
    decision is serialized per phone across all processes (SQLite: the write lock; PostgreSQL:
    transaction-scoped advisory locks on the phones' slots, taken in one order), and the rows over the
    cap are failed in the same transaction. So when two workers claim deliveries to one phone
    at once, the first to decide sees the other's claim and steps back, and the second sees
    that step: exactly ``cap`` go, never more, and never fewer because each saw the other."""
    if not rows:
        return [], []
    phones = sorted({c.phone for c in rows})
    d = deliveries_t
    with transaction(engine, write=True) as conn:
        if engine.dialect.name == "postgresql":
            keys = sorted({_phone_slot(p) for p in phones})  # one order for all: no deadlock
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:ns, k) FROM unnest(CAST(:keys AS integer[])) AS k"),
                         {"ns": _CAP_LOCK_CLASS, "keys": keys})
        seen: dict[str, int] = dict(conn.execute(
            sa.select(d.c.phone, sa.func.count())
            .where(d.c.phone.in_(phones), d.c.kind == "real", d.c.id.not_in([c.id for c in rows]),
                   d.c.status.in_((SENDING, ACCEPTED, DELIVERED, IN_DOUBT)),
                   sa.func.coalesce(d.c.sent_at, d.c.updated_at) >= day_start)
            .group_by(d.c.phone)
        ).all())
        ok, over = [], []
        for c in rows:
            if seen.get(c.phone, 0) >= cap:
                over.append(c)
            else:
                seen[c.phone] = seen.get(c.phone, 0) + 1
                ok.append(c)
        _fail(conn, run_id, gateway, over, "cap", text, now)
    return ok, over

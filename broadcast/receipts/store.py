"""Receipts in the database: ``record`` (log first, unapplied) and ``apply_pending`` (apply after).

The ``receipts`` table is the log; its ``applied`` column says what became of each row:

    0  PENDING   recorded, not applied yet (or deferred: its delivery is still ``sending``)
    1  APPLIED   applied, or nothing to change (a duplicate, a late ``accepted`` after ``delivered``)
    2  FLAGGED   contradicts a final state (``failed`` after ``delivered``, ``delivered`` after a send
                 that failed or expired, a report for a delivery never sent): kept, not applied
    3  UNKNOWN   no such delivery: logged, not an error

Every receipt takes this one path, pushed (``receipts serve``: ``record`` now, ``apply_pending``
after) or pulled (``ingest``: the dispatcher during a send; ``receipts pull``). Transitions:

==================================  ===========================  ====================================
delivery is                         report                       result
==================================  ===========================  ====================================
accepted / in_doubt / retry_wait    delivered                    delivered (``delivered_at`` = report time)
accepted / in_doubt / retry_wait    failed                       failed (``error_code`` = report code)
in_doubt / retry_wait               accepted / buffered          accepted (it was sent after all)
accepted                            accepted / buffered          unchanged
delivered                           delivered/accepted/buffered  unchanged (idempotent, monotonic)
delivered                           failed                       unchanged, FLAGGED
failed / expired                    failed/accepted/buffered     unchanged
failed / expired / queued           delivered                    unchanged, FLAGGED
sending                             any                          deferred (PENDING) until the run
                                                                 records its answer
==================================  ===========================  ====================================

A ``retry_wait`` delivery with a report was evidently sent: settling it prevents a duplicate resend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast.db.dispatch_models import (
    ACCEPTED,
    DELIVERED,
    EXPIRED,
    FAILED,
    IN_DOUBT,
    RETRY_WAIT,
    SENDING,
    Delivery,
    ReceiptLog,
)
from broadcast.db.engine import transaction
from broadcast.db.types import table
from broadcast.gateways.base import Receipt

PENDING, APPLIED, FLAGGED, UNKNOWN = 0, 1, 2, 3

receipts_t = table(ReceiptLog)
deliveries_t = table(Delivery)

_SETTLE_FROM = (ACCEPTED, IN_DOUBT, RETRY_WAIT)

#: ``(gateway, receipt[, raw payload])``
Row = tuple[str, Receipt] | tuple[str, Receipt, str | None]


def record(engine: Engine, rows: Sequence[Row],
           now: datetime) -> int:
    """Log ``(gateway, receipt[, raw payload])`` as PENDING, in one transaction (one multi-row insert)."""
    if not rows:
        return 0
    values = [
        dict(delivery_id=row[1].delivery_id, provider_id=row[1].provider_id, gateway=row[0], status=row[1].status,
             code=row[1].code, reported_at=row[1].at, received_at=now, applied=PENDING,
             raw=row[2] if len(row) > 2 else None)
        for row in rows
    ]
    with transaction(engine, write=True) as conn:
        for i in range(0, len(values), 5000):
            conn.execute(receipts_t.insert(), values[i:i + 5000])
    return len(values)


def ingest(engine: Engine, gateway: str, receipts: Sequence[Receipt], now: datetime) -> tuple[int, Applied]:
    """Pulled receipts (the dispatcher asking its gateway during a send): logged, then applied by
    the same rules as pushed ones. Returns the first id logged and what applying changed;
    receipts for deliveries still ``sending`` stay pending for a later ``apply_all``."""
    if not receipts:
        return 0, Applied()
    rows = [(gateway, r, json.dumps({"pulled": True, "delivery_id": r.delivery_id, "provider_id": r.provider_id,
                                     "status": r.status, "code": r.code, "at": r.at.isoformat()}))
            for r in receipts]
    with engine.connect() as conn:
        floor = conn.execute(sa.select(sa.func.max(receipts_t.c.id))).scalar_one_or_none() or 0
    record(engine, rows, now)
    return floor + 1, apply_all(engine, now, after_id=floor)


def apply_all(engine: Engine, now: datetime, *, after_id: int = 0, batch: int = 1000) -> Applied:
    """``apply_pending`` over every pending receipt with id > ``after_id``, a batch at a time."""
    total = Applied(last_id=after_id)
    while True:
        out = apply_pending(engine, now, after_id=total.last_id, limit=batch)
        for name in ("scanned", "changed", "applied", "flagged", "unknown", "deferred"):
            setattr(total, name, getattr(total, name) + getattr(out, name))
        total.flagged_ids += out.flagged_ids
        total.last_id = out.last_id
        if out.scanned < batch:
            return total


@dataclass
class Applied:
    scanned: int = 0
    changed: int = 0  # deliveries whose status changed
    applied: int = 0
    flagged: int = 0
    unknown: int = 0
    deferred: int = 0
    last_id: int = 0  # highest receipt id scanned
    flagged_ids: list[int] = field(default_factory=list)


def _decide(current: str, report: str) -> tuple[str | None, int]:
    """(new delivery status or None for no change, applied code) — the table in the module docstring."""
    if current == SENDING:
        return None, PENDING
    if current in _SETTLE_FROM:
        if report == "delivered":
            return DELIVERED, APPLIED
        if report == "failed":
            return FAILED, APPLIED
        return (ACCEPTED if current != ACCEPTED else None), APPLIED
    if current == DELIVERED:
        return None, FLAGGED if report == "failed" else APPLIED
    if current in (FAILED, EXPIRED):
        return None, FLAGGED if report == "delivered" else APPLIED
    # queued (never sent, or released): a report for it contradicts the ledger
    return None, FLAGGED


def apply_pending(engine: Engine, now: datetime, *, after_id: int = 0, limit: int = 1000) -> Applied:
    """Apply up to ``limit`` PENDING receipts with id > ``after_id``, oldest first, in one write
    transaction. Deferred rows stay PENDING; pass ``after_id=out.last_id`` to move past them."""
    out = Applied(last_id=after_id)
    r, d = receipts_t, deliveries_t
    with transaction(engine, write=True) as conn:
        rows = conn.execute(
            sa.select(r.c.id, r.c.delivery_id, r.c.provider_id, r.c.status, r.c.code, r.c.reported_at)
            .where(r.c.applied == PENDING, r.c.id > after_id).order_by(r.c.id).limit(limit)
        ).all()
        if not rows:
            return out
        out.scanned, out.last_id = len(rows), rows[-1].id
        by_provider = [x.provider_id for x in rows if x.delivery_id is None and x.provider_id]
        pid_map: dict[str, int] = {}
        if by_provider:
            pid_map = dict(conn.execute(
                sa.select(d.c.provider_id, d.c.id).where(d.c.provider_id.in_(set(by_provider)))
            ).all())
        ids = {x.delivery_id if x.delivery_id is not None else pid_map.get(x.provider_id or "") for x in rows}
        ids.discard(None)
        state: dict[int, str] = dict(conn.execute(
            sa.select(d.c.id, d.c.status).where(d.c.id.in_(ids))
        ).all()) if ids else {}
        marks: list[dict[str, int]] = []
        for x in rows:
            did = x.delivery_id if x.delivery_id is not None else pid_map.get(x.provider_id or "")
            current = state.get(did) if did is not None else None
            if did is None or current is None:
                marks.append(dict(b_id=x.id, b_applied=UNKNOWN))
                out.unknown += 1
                continue
            new, code = _decide(current, x.status)
            if code == PENDING:
                out.deferred += 1
                continue
            if new is not None:
                values: dict[str, object] = {"status": new, "updated_at": now}
                if new == DELIVERED:
                    values["delivered_at"] = x.reported_at
                elif new == FAILED:
                    values.update(error_code=x.code or "undelivered", error_text="the network reported it undelivered")
                else:  # ACCEPTED: settled as sent
                    values.update(error_code=None, error_text=None, next_attempt_at=None,
                                  sent_at=sa.func.coalesce(d.c.sent_at, sa.literal(x.reported_at, d.c.sent_at.type)))
                done = conn.execute(d.update().where(d.c.id == did, d.c.status == current).values(**values)).rowcount
                if done:
                    state[did] = new
                    out.changed += 1
            marks.append(dict(b_id=x.id, b_applied=code))
            if code == FLAGGED:
                out.flagged += 1
                out.flagged_ids.append(x.id)
            else:
                out.applied += 1
        if marks:
            conn.execute(r.update().where(r.c.id == sa.bindparam("b_id")).values(applied=sa.bindparam("b_applied")),
                         marks)
    return out


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(receipts_t)
                                .where(receipts_t.c.applied == PENDING)).scalar_one())


__all__ = ["APPLIED", "FLAGGED", "PENDING", "UNKNOWN", "Applied", "apply_all", "apply_pending", "ingest", "pending_count",
           "record"]

"""The delivery log: one row per delivery, filtered, phones masked unless asked otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from broadcast.audit.timeutil import range_utc
from broadcast.db.audit_chain import note
from broadcast.db.dispatch_models import DELIVERY_STATES, Delivery
from broadcast.db.engine import transaction
from broadcast.db.types import table
from broadcast.errors import InputError
from broadcast.recipients.phones import mask_phone
from broadcast.workspace import Workspace

deliveries_t = table(Delivery)
COLUMNS = ("delivery", "message", "group", "phone", "name", "status", "channel", "gateway", "provider_id", "attempts",
           "queued_at", "sent_at", "delivered_at", "error_code", "error_text")


@dataclass
class LogFilter:
    since: date | None = None
    until: date | None = None
    message_id: int | None = None
    group: str | None = None
    status: str | None = None
    phone: str | None = None
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in vars(self).items() if v is not None}


def _mask(phone: str) -> str:
    return phone if phone.startswith(("purged-", "group:")) else mask_phone(phone)  # group:N: a chat post


def rows(ws: Workspace, f: LogFilter, *, unmasked: bool = False, page: int = 2000) -> Iterator[dict[str, Any]]:
    """Deliveries in order, streamed page by page (keyset on id): never all in memory. A bad filter
    fails here, before any row. An unmasked view is recorded in the audit trail
    (``log.view_unmasked``, with the filters and the rows read) once it is read to its end or
    the reader stops."""
    stream = _stream(ws, _conditions(ws, f), f.limit, unmasked=unmasked, page=page)
    return _audited(ws, f, stream) if unmasked else stream


def _conditions(ws: Workspace, f: LogFilter) -> list[Any]:
    d = deliveries_t
    conds: list[Any] = [d.c.kind == "real"]
    since, until = range_utc(f.since, f.until, ws.settings.timezone)
    if since is not None:
        conds.append(d.c.queued_at >= since)
    if until is not None:
        conds.append(d.c.queued_at < until)
    if f.message_id is not None:
        conds.append(d.c.message_id == f.message_id)
    if f.status:
        if f.status not in DELIVERY_STATES:
            raise InputError(f"unknown status {f.status!r}; statuses: {', '.join(DELIVERY_STATES)}")
        conds.append(d.c.status == f.status)
    if f.phone:
        from broadcast.recipients.members import parse_phone

        conds.append(d.c.phone == parse_phone(f.phone, ws.settings.default_region))
    if f.group:
        conds.append(d.c.group_name.in_(_group_and_subgroups(ws, f.group)))
    return conds


def _stream(ws: Workspace, conds: list[Any], limit: int | None, *, unmasked: bool,
            page: int) -> Iterator[dict[str, Any]]:
    d = deliveries_t
    last, left = 0, limit
    while left is None or left > 0:
        n = page if left is None else min(page, left)
        with ws.engine.connect() as conn:
            batch = conn.execute(sa.select(d).where(d.c.id > last, *conds).order_by(d.c.id).limit(n)).all()
        if not batch:
            return
        for r in batch:
            yield {
                "delivery": r.id, "message": r.message_id, "group": r.group_name,
                "phone": r.phone if unmasked else _mask(r.phone), "name": r.name, "status": r.status,
                "channel": r.channel, "gateway": r.gateway, "provider_id": r.provider_id, "attempts": r.attempts,
                "queued_at": r.queued_at, "sent_at": r.sent_at, "delivered_at": r.delivered_at,
                "error_code": r.error_code, "error_text": r.error_text,
            }
        last = batch[-1].id
        if left is not None:
            left -= len(batch)


def _audited(ws: Workspace, f: LogFilter, stream: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    n = 0
    try:
        for r in stream:
            n += 1
            yield r
    except GeneratorExit:
        audit_view(ws, f, unmasked=True, export=None, count=n)
        raise
    audit_view(ws, f, unmasked=True, export=None, count=n)


def _group_and_subgroups(ws: Workspace, name: str) -> list[str]:
    from broadcast.recipients.groups import clean_group_name, group_id, groups_t, subtree_ids

    with ws.engine.connect() as conn:
        tree = subtree_ids(conn, [group_id(conn, clean_group_name(name))])
        return list(conn.execute(sa.select(groups_t.c.name).where(groups_t.c.id.in_(sa.select(tree.c.id)))).scalars())


def audit_view(ws: Workspace, f: LogFilter, *, unmasked: bool, export: Path | None, count: int | None) -> None:
    """Record an unmasked view, or any export, in the audit trail (``rows`` and ``export`` do)."""
    if not unmasked and export is None:
        return
    action = "log.export" if export is not None else "log.view_unmasked"
    obj = f"file:{export.name}" if export is not None else "deliveries"
    with transaction(ws.engine, write=True) as conn:
        note(conn, ws.operator, action, obj, filters=f.to_dict(), unmasked=unmasked, rows=count)


def export(ws: Workspace, f: LogFilter, path: Path, *, unmasked: bool = False) -> int:
    """Write the log to .csv (UTF-8 with BOM) or .xlsx, atomically; audited."""
    from broadcast.recipients.files import atomic_writer, write_rows

    conds = _conditions(ws, f)

    def values() -> Iterator[list[Any]]:
        for r in _stream(ws, conds, f.limit, unmasked=unmasked, page=2000):
            yield [r[c].isoformat() if hasattr(r[c], "isoformat") else r[c] for c in COLUMNS]

    with atomic_writer(path) as tmp:
        n = write_rows(tmp, path.suffix, list(COLUMNS), values(), encoding="utf-8-sig", sheet="deliveries")
        audit_view(ws, f, unmasked=unmasked, export=path, count=n)
    return n

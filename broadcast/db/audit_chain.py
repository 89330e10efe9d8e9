"""A tamper-evident audit trail: every action that changes state is appended, hash-chained.

Entry ``n`` holds ``prev_hash`` (entry ``n-1``'s hash; 64 zeros for the first) and
``hash = sha256(canonical JSON of {"id","at","operator","action","object","details","prev_hash"})``,
where canonical JSON is UTF-8, keys sorted, no spaces (``separators=(",", ":")``,
``ensure_ascii=False``) and ``at`` is ISO 8601 UTC with microseconds (``2026-11-27T05:00:00.000000+00:00``).
Ids run 1, 2, 3 … without gaps, and ``audit_head`` keeps the newest id and hash. So an edited
entry fails its own hash, a deleted or inserted one breaks the id sequence or the next entry's
``prev_hash``, two swapped entries break the chain, and a cut-off tail disagrees with the head
(and with any head an auditor kept from an earlier export).

Entries are appended inside the same transaction as the change they describe: both commit or
neither. Phone numbers in details are masked (138****1234): retention purges never need to
rewrite the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from broadcast.db.audit_models import AuditEntry, AuditHead
from broadcast.db.types import table, utcnow
from broadcast.errors import InputError

log_t = table(AuditEntry)
head_t = table(AuditHead)
GENESIS = "0" * 64


def canonical(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _at(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(id_: int, at: datetime, operator: str, action: str, obj: str, details: str, prev_hash: str) -> str:
    body = canonical({"id": id_, "at": _at(at), "operator": operator, "action": action, "object": obj,
                      "details": json.loads(details), "prev_hash": prev_hash})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record(conn: Connection, operator: str, action: str, obj: str, details: dict[str, Any] | None = None,
           at: datetime | None = None) -> int:
    """Append one entry inside the caller's transaction (which must be a write transaction).
    Returns its id."""
    at = at or utcnow()
    q = sa.select(head_t.c.last_id, head_t.c.last_hash).where(head_t.c.name == "main")
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    last_id, prev = (row[0], row[1]) if row else (0, GENESIS)
    new_id = last_id + 1
    text = canonical(details or {})
    digest = entry_hash(new_id, at, operator, action, obj, text, prev)
    conn.execute(log_t.insert().values(id=new_id, at=at, operator=operator, action=action, object=obj,
                                       details=text, prev_hash=prev, hash=digest))
    if row is None:
        conn.execute(head_t.insert().values(name="main", last_id=new_id, last_hash=digest))
    else:
        conn.execute(head_t.update().where(head_t.c.name == "main").values(last_id=new_id, last_hash=digest))
    return new_id


@dataclass
class Entry:
    id: int
    at: datetime
    operator: str
    action: str
    object: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": _at(self.at), "operator": self.operator, "action": self.action,
                "object": self.object, "details": self.details, "prev_hash": self.prev_hash, "hash": self.hash}


def entries(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
            action: str | None = None, limit: int | None = None, chunk: int = 5000) -> Iterator[Entry]:
    """Entries in order, streamed in chunks."""
    last = 0
    yielded = 0
    while True:
        q = sa.select(log_t).where(log_t.c.id > last).order_by(log_t.c.id).limit(chunk)
        if since is not None:
            q = q.where(log_t.c.at >= since)
        if until is not None:
            q = q.where(log_t.c.at < until)
        if action:
            q = q.where(sa.or_(log_t.c.action == action, log_t.c.action.like(f"{action}.%")))
        with engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return
        for r in rows:
            yield Entry(r.id, r.at, r.operator, r.action, r.object, json.loads(r.details), r.prev_hash, r.hash)
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        last = rows[-1].id


@dataclass
class Verification:
    ok: bool
    entries: int
    problem: str | None = None
    entry_id: int | None = None  # the first entry that is wrong (or where the chain breaks)
    head_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def verify_rows(rows: Iterator[tuple[int, datetime, str, str, str, str, str, str]],
                head: tuple[int, str] | None, *, require_head: bool = True) -> Verification:
    """Check a sequence of (id, at, operator, action, object, details, prev_hash, hash) rows
    against each other and, when given, the head (newest id and hash)."""
    expected_id, prev, count = 1, GENESIS, 0
    for id_, at, operator, action, obj, details, prev_hash, digest in rows:
        count += 1
        if id_ != expected_id:
            what = "deleted" if id_ > expected_id else "inserted or reordered"
            return Verification(False, count, f"entry {expected_id} is missing: entries were {what} before entry {id_}", id_)
        if prev_hash != prev:
            return Verification(False, count, f"entry {id_} does not follow entry {id_ - 1}: the chain was broken "
                                              "(an entry inserted, removed or reordered)", id_)
        try:
            recomputed = entry_hash(id_, at, operator, action, obj, details, prev_hash)
        except (ValueError, TypeError):
            recomputed = ""
        if recomputed != digest:
            return Verification(False, count, f"entry {id_} was edited: its content does not match its hash", id_)
        prev, expected_id = digest, expected_id + 1
    last_id = expected_id - 1
    if head is not None and (head[0] != last_id or head[1] != prev):
        return Verification(False, count, f"the chain ends at entry {last_id} but its head says entry {head[0]}: "
                                          "entries were removed from the end (or the head was altered)", last_id + 1)
    if head is None and last_id and require_head:
        return Verification(False, count, "the chain has no head record", last_id)
    return Verification(True, count, None, None, prev)


def verify(engine: Engine, chunk: int = 20_000) -> Verification:
    """Recompute the whole chain; names the first entry edited, deleted, inserted or reordered."""
    def rows() -> Iterator[tuple[Any, ...]]:
        last = 0
        while True:
            with engine.connect() as conn:
                batch = conn.execute(
                    sa.select(log_t.c.id, log_t.c.at, log_t.c.operator, log_t.c.action, log_t.c.object,
                              log_t.c.details, log_t.c.prev_hash, log_t.c.hash)
                    .where(log_t.c.id > last).order_by(log_t.c.id).limit(chunk)
                ).all()
            if not batch:
                return
            yield from batch
            last = batch[-1][0]

    with engine.connect() as conn:
        head = conn.execute(sa.select(head_t.c.last_id, head_t.c.last_hash).where(head_t.c.name == "main")).first()
    return verify_rows(rows(), tuple(head) if head else None)


def export(engine: Engine, path: Path) -> tuple[int, str]:
    """Write the trail as JSON lines (one entry each, with its hashes), atomically. Returns
    (entries, head hash). Verify it alone with ``verify_file``, as described in the README."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    n, head = 0, GENESIS
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for e in entries(engine):
                fh.write(canonical(e.to_dict()) + "\n")
                n, head = n + 1, e.hash
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n, head


def verify_file(path: Path, expected_head: str | None = None) -> Verification:
    """Verify an exported JSONL file on its own (no database needed); with ``expected_head``
    (the head hash an auditor kept), also that nothing was cut off its end."""
    def rows() -> Iterator[tuple[Any, ...]]:
        with path.open(encoding="utf-8") as fh:
            lineno = 0
            try:
                for lineno, line in enumerate(fh, 1):  # noqa: B007 (read in the except below)
                    e = json.loads(line)
                    entry = (e["id"], datetime.fromisoformat(e["at"]), e["operator"], e["action"], e["object"],
                             canonical(e["details"]), e["prev_hash"], e["hash"])
                    yield entry
            except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
                what = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else \
                    f"missing field {exc}" if isinstance(exc, KeyError) else "not an audit entry"
                raise InputError(f"{path}: line {lineno + (1 if isinstance(exc, UnicodeDecodeError) else 0)} is {what}",
                                 hint="give the JSONL file written by 'broadcast audit export'") from None

    result = verify_rows(rows(), None, require_head=False)
    if result.ok and expected_head is not None and result.head_hash != expected_head:
        return Verification(False, result.entries, f"the file ends with hash {str(result.head_hash)[:12]}…, not the "
                            f"expected head {expected_head[:12]}…: entries were cut off the end", result.entries)
    return result


def note(conn: Connection, operator: str, action: str, obj: str, **details: Any) -> int:
    """``record`` with keyword details: ``note(conn, ws.operator, "group.add", "group:X", parent=None)``."""
    return record(conn, operator, action, obj, details)

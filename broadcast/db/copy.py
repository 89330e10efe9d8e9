"""``broadcast db copy --to URL``: move a whole history (e.g. from the SQLite file into
PostgreSQL) with ids, times, deliveries and the audit chain intact.

The target is migrated to the latest schema first and must hold no data. Tables are copied in
foreign-key order, streamed in primary-key order in chunks, in one transaction on the target;
PostgreSQL sequences are then moved past the copied ids. Row counts are compared and the audit
chain is verified on the target before the command reports success.

The source is read in one transaction, so the copy is the database as it stood at one moment even
while workers keep sending: on SQLite one read transaction (a WAL snapshot), on PostgreSQL one
``REPEATABLE READ`` read-only transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast.db.engine import make_engine, transaction
from broadcast.db.migrate import ensure_schema
from broadcast.errors import ConflictError, StateError

ORDER = ("groups", "budgets", "group_robots", "members", "memberships", "optouts", "channel_optouts", "schedules",
         "schedule_targets", "messages", "message_targets", "runs", "deliveries", "delivery_people", "delivery_attempts", "receipts", "rate_buckets",
         "inbound", "feedback", "submissions", "audit_log", "audit_head")
CHUNK = 5000


@dataclass
class CopyResult:
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    audit_entries: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "rows": self.rows, "audit_entries": self.audit_entries}


def tables() -> dict[str, sa.Table]:
    """Every table of the history, in foreign-key order."""
    from sqlmodel import SQLModel

    import broadcast.db.models  # noqa: F401  (registers every table)

    return {name: SQLModel.metadata.tables[name] for name in ORDER}


def copy_database(source: Engine, target_url: str, progress: Callable[[str, int], None] | None = None) -> CopyResult:
    from broadcast.config import mask_url
    from broadcast.db.audit_chain import verify

    target = make_engine(target_url)
    if target.url == source.url:
        raise ConflictError("the target is the database in use", hint="give another URL with --to")
    ensure_schema(target)
    tables_ = tables()
    with target.connect() as conn:
        busy = [n for n, t in tables_.items() if conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()]
    if busy:
        raise ConflictError(f"the target already holds data (table {busy[0]})", hint="copy into an empty database")
    result = CopyResult(mask_url(target_url))
    sconn = source.connect()
    if source.dialect.name == "postgresql":  # every chunk from one snapshot, not one each
        sconn = sconn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with transaction(target, write=True) as tconn, sconn:
        for name, table in tables_.items():
            pk = list(table.primary_key.columns)
            parent = table.c.get("parent_id") if name == "groups" else None
            last: tuple[object, ...] | None = None
            copied = 0
            while True:
                q = sa.select(table).order_by(*pk).limit(CHUNK)
                if last is not None:
                    q = q.where(sa.tuple_(*pk) > sa.tuple_(*[sa.literal(v) for v in last])) if len(pk) > 1 \
                        else q.where(pk[0] > last[0])
                rows = [dict(r._mapping) for r in sconn.execute(q)]
                if not rows:
                    break
                if parent is not None:  # parents first: link them once every group exists
                    tconn.execute(table.insert(), [{**r, "parent_id": None} for r in rows])
                else:
                    tconn.execute(table.insert(), rows)
                copied += len(rows)
                last = tuple(rows[-1][c.name] for c in pk)
                if progress:
                    progress(name, copied)
            if parent is not None:
                links = [{"b_id": r.id, "b_parent": r.parent_id}
                         for r in sconn.execute(sa.select(table.c.id, table.c.parent_id).where(table.c.parent_id.is_not(None)))]
                if links:
                    tconn.execute(table.update().where(table.c.id == sa.bindparam("b_id"))
                                  .values(parent_id=sa.bindparam("b_parent")), links)
            result.rows[name] = copied
        if target.dialect.name == "postgresql":
            for name, table in tables_.items():
                pk = list(table.primary_key.columns)
                if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
                    continue
                col = pk[0].name
                seq = tconn.exec_driver_sql(f"SELECT pg_get_serial_sequence('{name}', '{col}')").scalar()
                if seq:  # move the sequence past the copied ids, so new rows do not collide
                    tconn.exec_driver_sql(f"SELECT setval('{seq}', GREATEST((SELECT max({col}) FROM {name}), 1))")
    with target.connect() as conn:
        for name, table in tables_.items():
            n = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            if n != result.rows[name]:
                raise StateError(f"copy check failed: {name} has {n} rows on the target, {result.rows[name]} copied")
    check = verify(target)
    if not check.ok:
        raise StateError(f"the audit chain does not verify on the target: {check.problem}")
    result.audit_entries = check.entries
    target.dispose()
    return result

"""Query helpers shared by the receipts tests."""

from __future__ import annotations

import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery, ReceiptLog


def status_of(engine: sa.Engine, *ids: int) -> list[str]:
    d = Delivery.__table__
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(d.c.id, d.c.status).where(d.c.id.in_(ids))).all())
    return [rows[i] for i in ids]


def receipt_rows(engine: sa.Engine) -> list[sa.Row]:  # type: ignore[type-arg]
    r = ReceiptLog.__table__
    with engine.connect() as conn:
        return list(conn.execute(sa.select(r).order_by(r.c.id)).all())

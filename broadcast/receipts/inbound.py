"""Replies (mobile-originated messages) as they arrived: kept, one row per provider id.

The operator links hand them over with their raw PDU; the two-way features (opt-out by reply,
the feedback inbox) read this table. A reply the server sends again (we had not answered it
before a crash) is the same provider id, and is not stored twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from broadcast.db.dispatch_models import InboundMessage
from broadcast.db.engine import transaction
from broadcast.db.types import table
from broadcast.gateways.base import Inbound

__all__ = ["count", "record"]

inbound_t = table(InboundMessage)


def record(engine: Engine, items: Sequence[Inbound], now: datetime) -> int:
    """Store ``items`` (a duplicate provider id of the same gateway is skipped); how many were new."""
    if not items:
        return 0
    rows = [dict(gateway=i.gateway, provider_id=i.provider_id, phone=i.phone, to_addr=i.to, text=i.text,
                 sent_at=i.at, received_at=now, raw=i.raw.hex()) for i in items]
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(inbound_t)
    with transaction(engine, write=True) as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(inbound_t)).scalar_one()
        conn.execute(insert.on_conflict_do_nothing(), rows)
        return int(conn.execute(sa.select(sa.func.count()).select_from(inbound_t)).scalar_one() - before)


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(inbound_t)).scalar_one())

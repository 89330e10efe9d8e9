"""Fixtures for the receipts tests: a migrated database with deliveries in chosen states."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.dispatch import ledger

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(ws: object) -> Iterator[sa.Engine]:
    yield ws.engine  # type: ignore[attr-defined]


@pytest.fixture
def make_deliveries(engine: sa.Engine) -> Callable[..., list[int]]:
    """``make_deliveries(n, status="accepted", gateway="kannel")`` -> delivery ids."""

    def make(n: int, status: str = "accepted", gateway: str = "kannel") -> list[int]:
        with transaction(engine, write=True) as conn:
            mid = conn.execute(sa.insert(Message.__table__).values(
                body="你好", signature="", category="notice", status="sending", author="tester",
                created_at=T0, updated_at=T0, target_all=False)).inserted_primary_key[0]
            start = conn.execute(sa.select(sa.func.count()).select_from(Delivery.__table__)).scalar_one()
            ledger.freeze(conn, mid, [ledger.FrozenRecipient(None, f"+86139{start + i:08d}", "", "", "你好")
                                      for i in range(n)], T0, gateway)
            ids = list(conn.execute(sa.select(Delivery.__table__.c.id).where(Delivery.__table__.c.message_id == mid)
                                    .order_by(Delivery.__table__.c.id)).scalars())
            conn.execute(sa.update(Delivery.__table__).where(Delivery.__table__.c.message_id == mid)
                         .values(status=status, sent_at=T0 if status != "queued" else None))
        return ids

    return make

"""When the current attempt's request was handed to the gateway: a crash can then tell the
deliveries whose request may have left (in doubt) from those claimed but never started (queued
again)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "deliveries.request_at: claimed deliveries whose request never started are not in doubt"


def upgrade(op: Operations) -> None:
    op.add_column("deliveries", sa.Column("request_at", UTCDateTime, nullable=True))
    # rows a run of the previous release left sending may have gone: they stay in doubt
    op.execute("UPDATE deliveries SET request_at = updated_at WHERE status = 'sending'")

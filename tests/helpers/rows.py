"""Rows written straight into the tables, for tests of what reads them (the auditor's views,
reports, exports): one sent message and its deliveries, without a send."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from broadcast.db.dispatch_models import Delivery
from broadcast.db.models import Message


def insert_sent_message(conn: Connection, at: datetime, deliveries: Sequence[dict[str, Any]], message_id: int = 1) -> None:
    """Message ``message_id``, sent at ``at`` to all members, and ``deliveries``: each a dict of
    the columns that differ from a real one-part delivery of it by the simulator at ``at``."""
    conn.execute(Message.__table__.insert().values(
        id=message_id, body="x", template=None, signature="", category="notice", status="sent", author="a",
        approver="b", reject_reason=None, status_reason=None, created_at=at, updated_at=at, started_at=at,
        scheduled_at=None, send_after=None, schedule_id=None, target_all=True, optout_skipped=0))
    base = dict(message_id=message_id, kind="real", member_id=None, text="t", parts=1, attempts=1, gateway="simulator",
                queued_at=at, updated_at=at, sent_at=at, error_code=None, error_text=None)
    conn.execute(Delivery.__table__.insert(), [{**base, **d} for d in deliveries])

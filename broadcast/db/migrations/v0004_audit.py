"""The audit trail; opted-out skips per message; indexes for the delivery log and reports."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "audit trail, message start time and opted-out skips, raw receipts, log and report indexes"


def upgrade(op: Operations) -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("operator", sa.String(100), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("object", sa.String(300), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_table(
        "audit_head",
        sa.Column("name", sa.String(20), primary_key=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    # A plain ADD COLUMN (no table rebuild: on SQLite a rebuild would drop and re-create the table
    # that deliveries and targets reference).
    op.add_column("messages", sa.Column("optout_skipped", sa.Integer, nullable=False, server_default="0"))
    op.add_column("messages", sa.Column("started_at", UTCDateTime, nullable=True))
    op.add_column("receipts", sa.Column("raw", sa.Text, nullable=True))
    op.execute(  # messages that started sending before this version: when their deliveries were frozen
        "UPDATE messages SET started_at = (SELECT min(queued_at) FROM deliveries "
        "WHERE deliveries.message_id = messages.id AND deliveries.kind = 'real') "
        "WHERE status IN ('sending', 'sent', 'paused')"
    )
    op.create_index("ix_deliveries_queued_at", "deliveries", ["queued_at"])
    op.create_index("ix_deliveries_status_queued", "deliveries", ["status", "queued_at"])
    # covering index for reports: one ordered, index-only scan serves every --by dimension
    op.create_index("ix_deliveries_report", "deliveries", ["group_name", "message_id", "status", "gateway", "kind", "parts"])

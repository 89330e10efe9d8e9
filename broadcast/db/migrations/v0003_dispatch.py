"""Runs, deliveries, attempts, receipts and shared rate buckets: the send path."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "runs, deliveries, delivery attempts, receipts, rate buckets"


def upgrade(op: Operations) -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("pid_start", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("operator", sa.String(100), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="SET NULL"), nullable=True),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("group_name", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("claimed_by", sa.String(36), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("gateway", sa.String(50), nullable=False),
        sa.Column("provider_id", sa.String(100), nullable=True),
        sa.Column("error_code", sa.String(100), nullable=True),
        sa.Column("error_text", sa.Text, nullable=True),
        sa.Column("queued_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("delivered_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("uq_delivery_message_phone", "deliveries", ["message_id", "phone"], unique=True,
                    sqlite_where=sa.text("kind = 'real'"), postgresql_where=sa.text("kind = 'real'"))
    op.create_index("ix_deliveries_claim", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_message_status", "deliveries", ["message_id", "status"])
    op.create_index("ix_deliveries_phone_sent", "deliveries", ["phone", "sent_at"])
    op.create_index("ix_deliveries_provider_id", "deliveries", ["provider_id"])
    op.create_index("ix_deliveries_claimed_by", "deliveries", ["claimed_by"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("gateway", sa.String(50), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("code", sa.String(100), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])
    op.create_table(
        "receipts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.Integer, nullable=True),
        sa.Column("provider_id", sa.String(100), nullable=True),
        sa.Column("gateway", sa.String(50), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("code", sa.String(100), nullable=True),
        sa.Column("reported_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("applied", sa.Integer, nullable=False),
    )
    op.create_index("ix_receipts_delivery_id", "receipts", ["delivery_id"])
    op.create_index("ix_receipts_provider_id", "receipts", ["provider_id"])
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )

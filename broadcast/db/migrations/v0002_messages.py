"""Messages, their target groups, and daily schedules."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "messages, message targets, daily schedules"


def upgrade(op: Operations) -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("series", sa.String(200), nullable=False),
        sa.Column("send_time", sa.String(5), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("days", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("target_all", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "schedule_targets",
        sa.Column("schedule_id", sa.Integer, sa.ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "group_id", name="pk_schedule_targets"),
    )
    op.create_index("ix_schedule_targets_group_id", "schedule_targets", ["group_id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("template", sa.String(200), nullable=True),
        sa.Column("signature", sa.String(100), nullable=False),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("approver", sa.String(100), nullable=True),
        sa.Column("reject_reason", sa.Text, nullable=True),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("scheduled_at", UTCDateTime, nullable=True),
        sa.Column("send_after", UTCDateTime, nullable=True),
        sa.Column("schedule_id", sa.Integer, sa.ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True),
        sa.Column("target_all", sa.Boolean, nullable=False),
    )
    op.create_index("ix_messages_status", "messages", ["status"])
    op.create_index("ix_messages_send_after", "messages", ["send_after"])
    op.create_index("ix_messages_schedule_id", "messages", ["schedule_id"])
    op.create_table(
        "message_targets",
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "group_id", name="pk_message_targets"),
    )
    op.create_index("ix_message_targets_group_id", "message_targets", ["group_id"])

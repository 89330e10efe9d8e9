"""Two-way: what a reply was taken for, the feedback inbox, branch submissions, and opt-outs that
know where they came from (a reply's opt-out may be lifted by a reply; a carrier's block is
reported, not failed every day)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "two-way: inbound matching, feedback inbox, submissions, opt-out sources, branch submitters"


def upgrade(op: Operations) -> None:
    op.add_column("inbound", sa.Column("extension", sa.String(32), nullable=False, server_default=""))
    op.add_column("inbound", sa.Column("member_id", sa.Integer, nullable=True))
    op.add_column("inbound", sa.Column("message_id", sa.Integer, nullable=True))
    op.add_column("inbound", sa.Column("kind", sa.String(12), nullable=False, server_default="new"))
    op.create_index("ix_inbound_received_at", "inbound", ["received_at"])
    op.add_column("optouts", sa.Column("source", sa.String(12), nullable=False, server_default="manual"))
    op.add_column("optouts", sa.Column("inbound_id", sa.Integer, nullable=True))
    op.add_column("messages", sa.Column("to_phone", sa.String(20), nullable=True))
    op.add_column("memberships", sa.Column("submitter", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("inbound_id", sa.Integer, sa.ForeignKey("inbound.id"), nullable=False, unique=True),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="SET NULL"), nullable=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="SET NULL"), nullable=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("category", sa.String(12), nullable=True),
        sa.Column("assigned_group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="SET NULL"), nullable=True),
        sa.Column("due_date", sa.Date, nullable=True),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("closed_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_feedback_status", "feedback", ["status"])
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="SET NULL"), nullable=True),
        sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="SET NULL"), nullable=True),
        sa.Column("inbound_id", sa.Integer, sa.ForeignKey("inbound.id"), nullable=True, unique=True),
        sa.Column("source", sa.String(12), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("wanted_day", sa.Date, nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("schedule_id", sa.Integer, sa.ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True),
        sa.Column("day", sa.Date, nullable=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
    )
    op.create_index("ix_submissions_status", "submissions", ["status"])
    op.create_index("ix_submissions_group_id", "submissions", ["group_id"])

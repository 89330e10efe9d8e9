"""Groups, members, memberships and opt-outs."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "groups, members, memberships, opt-outs"


def upgrade(op: Operations) -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_groups_parent_id", "groups", ["parent_id"])
    op.create_table(
        "members",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("phone", sa.String(20), nullable=False, unique=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(100), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_members_name", "members", ["name"])
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("member_id", "group_id", name="uq_membership"),
    )
    op.create_index("ix_memberships_member_id", "memberships", ["member_id"])
    op.create_index("ix_memberships_group_id", "memberships", ["group_id"])
    op.create_table(
        "optouts",
        sa.Column("phone", sa.String(20), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )

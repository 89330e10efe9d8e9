"""Channels beyond SMS (issue 17): a member's contact points besides the phone, a group chat's
robots, opt-outs per channel, a message's channels and fallback, and the channel and address that
carried each delivery (a robot post: one delivery for the chat, linked to the people it stands for)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = ("channels: member email/wecom/dingtalk/feishu, group robots, per-channel opt-outs, "
               "message channels and fallback, delivery channel/address and the people of a chat post")


def upgrade(op: Operations) -> None:
    for column, size in (("email", 254), ("wecom", 64), ("dingtalk", 64), ("feishu", 64)):
        op.add_column("members", sa.Column(column, sa.String(size), nullable=False, server_default=""))
    op.create_table(
        "group_robots",
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("platform", sa.String(12), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False, server_default=""),
        sa.Column("set_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("set_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("group_id", "platform", name="pk_group_robots"),
    )
    op.add_column("optouts", sa.Column("all_channels", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "channel_optouts",
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.String(100), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("phone", "channel", name="pk_channel_optouts"),
    )
    op.add_column("messages", sa.Column("channels", sa.String(200), nullable=False, server_default=""))
    op.add_column("messages", sa.Column("fallback", sa.String(20), nullable=False, server_default=""))
    op.add_column("deliveries", sa.Column("channel", sa.String(20), nullable=False, server_default="sms"))
    op.add_column("deliveries", sa.Column("address", sa.String(254), nullable=False, server_default=""))
    op.create_table(
        "delivery_people",
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("member_id", sa.Integer, sa.ForeignKey("members.id", ondelete="SET NULL"), nullable=True),
        sa.Column("name", sa.String(100), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("delivery_id", "phone", name="pk_delivery_people"),
    )
    op.create_index("ix_delivery_people_phone", "delivery_people", ["phone"])

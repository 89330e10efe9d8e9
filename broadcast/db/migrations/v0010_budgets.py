"""Costs and budgets: a monthly budget per group (its sub-groups included), and the record of an
operator approving a message's overrun of it. Self-contained: nothing else depends on its number."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "budgets: monthly budget per group (fen); messages.over_budget_by/at (an approved overrun)"


def upgrade(op: Operations) -> None:
    op.create_table(
        "budgets",
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("monthly_fen", sa.BigInteger, nullable=False),
        sa.Column("set_by", sa.String(100), nullable=False),
        sa.Column("set_at", UTCDateTime, nullable=False),
    )
    op.add_column("messages", sa.Column("over_budget_by", sa.String(100), nullable=True))
    op.add_column("messages", sa.Column("over_budget_at", UTCDateTime, nullable=True))

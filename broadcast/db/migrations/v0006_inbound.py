"""Mobile-originated messages (replies) as they arrived, one row each, deduplicated by the
provider's id: the operator links (CMPP, SMPP) hand them over on the session that carries the
sends, and nothing a server was told we have may be dropped."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

from broadcast.db.types import UTCDateTime

DESCRIPTION = "inbound: replies as they arrived (raw payload kept, one row per provider id)"


def upgrade(op: Operations) -> None:
    op.create_table(
        "inbound",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("gateway", sa.String(50), nullable=False),
        sa.Column("provider_id", sa.String(100), nullable=True),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("to_addr", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.UniqueConstraint("gateway", "provider_id", name="uq_inbound_provider_id"),
    )
    op.create_index("ix_inbound_phone", "inbound", ["phone"])

"""Where a reply to each delivery comes back when it was sent with a reply extension code
(``BROADCAST_REPLY_EXTENSION_DIGITS``): a reply that comes back there is matched to that delivery's
message."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

DESCRIPTION = "deliveries.reply_address: our number + the reply extension code a delivery was sent with"


def upgrade(op: Operations) -> None:
    op.add_column("deliveries", sa.Column("reply_address", sa.String(32), nullable=True))

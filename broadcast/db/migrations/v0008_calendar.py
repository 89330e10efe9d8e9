"""The working calendar: on which days a daily schedule sends (``--on``) and what happens to the
line of a day it does not send on (``--on-skip``); a series line pinned to a date, and the line of
the series file each message came from."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

DESCRIPTION = "working calendar: schedules' --on and --on-skip, pinned series lines"


def upgrade(op: Operations) -> None:
    op.add_column("schedules", sa.Column("send_on", sa.String(20), nullable=False, server_default="every-day"))
    op.add_column("schedules", sa.Column("on_skip", sa.String(8), nullable=False, server_default="next"))
    op.add_column("messages", sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("messages", sa.Column("series_line", sa.Integer, nullable=True))

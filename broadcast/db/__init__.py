"""Storage: engines, tables and migrations. ``open_database`` is the one entry point."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from broadcast.config import Settings


def open_database(settings: Settings) -> Engine:
    """An engine on the configured store, migrated to the latest schema."""
    from broadcast.db.engine import make_engine
    from broadcast.db.migrate import ensure_schema

    engine = make_engine(settings.effective_database_url, busy_timeout_s=settings.busy_timeout_s)
    ensure_schema(engine)
    return engine

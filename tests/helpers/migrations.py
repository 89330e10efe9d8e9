"""A database as an older release left it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from broadcast.db.migrate import all_migrations, migrate


def migrate_only_to(engine: sa.Engine, version: int) -> None:
    """Apply migrations 1..version only, as an older release would have."""
    import broadcast.db.migrate as m

    old = [x for x in all_migrations() if x.version <= version]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(m, "all_migrations", lambda: old)
        assert migrate(engine) == version

"""The context every core operation runs in: settings, the database, and who is acting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from broadcast.config import Settings


@dataclass
class Workspace:
    settings: Settings
    engine: Engine

    @property
    def operator(self) -> str:
        return self.settings.effective_operator

    @classmethod
    def open(cls, settings: Settings | None = None, **overrides: Any) -> Workspace:
        """Load the settings (unless given) and open the migrated database."""
        from broadcast.config import load_settings
        from broadcast.db import open_database

        settings = settings or load_settings(**overrides)
        return cls(settings, open_database(settings))

    def close(self) -> None:
        self.engine.dispose()

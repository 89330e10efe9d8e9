"""Settings, read from ``BROADCAST_*`` environment variables and a ``.env`` file.

Every setting is documented in ``.env.example``; ``broadcast config`` prints the effective values
with secrets masked. Precedence: environment variable > ``.env`` file > default. The ``.env``
file is read from the current directory, or from ``BROADCAST_ENV_FILE`` when that is set.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.errors import ConfigError


def default_data_dir() -> Path:
    """The per-user data directory: ``~/.local/share/broadcast`` on Linux (XDG), the
    platform's equivalent elsewhere (``%LOCALAPPDATA%\\broadcast`` on Windows)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("broadcast", appauthor=False))


class Settings(BaseSettings):
    """The effective configuration of one command."""

    model_config = SettingsConfigDict(
        env_prefix="BROADCAST_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default_factory=default_data_dir, description="Where the default SQLite database lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; default sqlite:///<data_dir>/broadcast.db. "
        "PostgreSQL: postgresql+psycopg://user:password@host/db",
    )
    operator: str | None = Field(default=None, description="Who is acting, for approvals and the audit trail; default: the OS user.")
    default_region: str = Field(default="CN", description="Country of numbers written without a country code (ISO 3166 code).")
    debug: bool = Field(default=False, description="Show tracebacks for errors.")

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.strip().upper()
        if len(value) != 2 or not value.isalpha():
            raise ValueError(f"must be a two-letter country code like CN, not {value!r}")
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'broadcast.db'}"

    @property
    def effective_operator(self) -> str:
        if self.operator:
            return self.operator
        try:
            return getpass.getuser()
        except Exception:  # no user name on this system (some containers)
            return "unknown"

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain values, with secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["database_url"] = mask_url(self.effective_database_url)
        out["operator"] = self.effective_operator
        return out


def mask_url(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:********@h/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:********@{host}"
    return url


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value becomes one clear ``ConfigError`` line."""
    env_file = os.environ.get("BROADCAST_ENV_FILE", ".env")
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(
            f"invalid setting BROADCAST_{field.upper()}={err.get('input')!r}: {err['msg']}",
            hint="fix it in the environment or in .env (see .env.example)",
        ) from None

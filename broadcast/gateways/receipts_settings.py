"""``BROADCAST_RECEIPTS_*``: the receipts endpoint's and the pull's settings (no server imports, so
a gateway's push format can read ``public_url``)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.errors import ConfigError

__all__ = ["ReceiptsSettings", "load_receipts_settings"]


class ReceiptsSettings(BaseSettings):
    """``BROADCAST_RECEIPTS_*`` (``BROADCAST_RECEIPTS_URL`` is read by the gateways that push)."""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_RECEIPTS_", env_file=".env", extra="ignore")

    secret: SecretStr = Field(default=SecretStr(""), description="Shared secret required in the URL path or the X-Broadcast-Secret header; empty: none.")
    max_bytes: int = Field(default=65536, ge=256, le=16 * 1024 * 1024, description="Largest callback accepted (body + query string), bytes.")
    answer_timeout_s: float = Field(default=10.0, gt=0, le=300, description="How long a callback waits for its row to be committed before 503.")
    apply_interval_s: float = Field(default=0.2, gt=0, le=60, description="How often pending receipts are applied to deliveries (also after every commit).")
    public_url: str = Field(default="", description="Base URL of this endpoint as the providers see it (behind a reverse proxy), e.g. https://sms.example.org/receipts; Twilio signs the exact URL it calls.")
    pull_budget: int = Field(default=200, ge=1, le=100_000, description="API requests per gateway per `broadcast receipts pull` (and per periodic pull of the worker).")


def load_receipts_settings(**overrides: Any) -> ReceiptsSettings:
    try:
        return ReceiptsSettings(_env_file=os.environ.get("BROADCAST_ENV_FILE", ".env"), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"invalid setting BROADCAST_RECEIPTS_{field.upper()}: {err['msg']}",
                          hint="fix it in the environment or in .env (see .env.example)") from None

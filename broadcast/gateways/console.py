"""``console``: prints what would be sent (to stderr) and accepts everything.

One line per recipient: ``[console] #<delivery id> → <phone>: <text>`` (newlines in the text shown
as ``⏎``). Provider id ``console-<delivery id>``. No settings, no receipts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import Capabilities, Gateway, Outcome, SendItem, SendResult

CAPABILITIES = Capabilities(
    name="console",
    max_batch=100,
    mixed_texts=True,
    description="Prints each message to stderr instead of sending it (dry runs, demos).",
)


class ConsoleSettings(BaseSettings):
    """``BROADCAST_CONSOLE_*`` (none yet)."""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_CONSOLE_", env_file=".env", extra="ignore")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ConsoleGateway(Gateway):
    """See the module docstring. ``writer`` receives each line (default: print to stderr)."""

    capabilities = CAPABILITIES
    settings_class = ConsoleSettings

    def __init__(
        self,
        settings: BaseSettings,
        client: httpx.AsyncClient | None = None,
        *,
        writer: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(settings, client)
        self._write = writer or _stderr

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        results = []
        for item in batch:
            text = item.text.replace("\r\n", "\n").replace("\n", "⏎")
            self._write(f"[console] #{item.delivery_id} → {item.phone}: {text}")
            results.append(SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=f"console-{item.delivery_id}"))
        return results

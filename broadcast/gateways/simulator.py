"""``simulator``: the embedded default gateway, in-process, deterministic with a seed.

Each request waits ``BROADCAST_SIMULATOR_LATENCY_MS``. Each item's fate is drawn from a random
generator seeded by ``(seed, delivery_id, attempt)``, where ``attempt`` counts this instance's sends
of that delivery (1, 2, …): the same seed gives the same outcomes in every run.

* a phone of ``DEAD_NUMBERS`` (comma-separated E.164) → always permanent ``EMPTY_NUMBER`` (空号), and a
  phone that is not E.164 (``+`` and 6–15 digits) → always permanent ``INVALID_NUMBER``;
* ``THROTTLE_RATE`` of items → retryable ``throttled`` with ``retry_after_s`` (the whole gateway
  slowing down: it counts toward the message's auto-pause once a delivery's retries are spent);
* ``FAILURE_RATE`` of items → permanent ``EMPTY_NUMBER`` (空号);
* the rest → accepted, provider id ``sim-<delivery_id>-<attempt>``.

Its refused numbers (``EMPTY_NUMBER``, ``INVALID_NUMBER``) are recipient faults: they fail that
delivery alone and never count toward the auto-pause.

An accepted item gets a delivery receipt ``RECEIPT_DELAY_MS`` later: ``failed`` (``UNDELIV``) for
``UNDELIVERED_RATE`` of them, else ``delivered``. ``fetch_receipts()`` returns those now due, once.
``query()`` answers from this instance's memory only (a previous process's sends: ``None``).
"""

from __future__ import annotations

import asyncio
import heapq
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import (
    Capabilities,
    Gateway,
    Outcome,
    Receipt,
    SendItem,
    SendResult,
)

if TYPE_CHECKING:
    from broadcast.gateways.push import Format, InboundFormat

CAPABILITIES = Capabilities(
    name="simulator",
    max_batch=100,
    mixed_texts=True,
    adds_signature=False,
    max_per_second=500.0,
    can_query=True,
    pull_receipts=True,
    description="In-process simulator (the default): latency, failures, throttling and receipts, seedable.",
)

_E164 = re.compile(r"\+\d{6,15}")


class SimulatorSettings(BaseSettings):
    """``BROADCAST_SIMULATOR_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_SIMULATOR_", env_file=".env", extra="ignore")

    latency_ms: float = Field(default=20.0, ge=0, description="Simulated time per request.")
    failure_rate: float = Field(default=0.02, ge=0, le=1, description="Share of permanent failures (空号).")
    throttle_rate: float = Field(default=0.0, ge=0, le=1, description="Share of throttled (retryable) items.")
    throttle_retry_after_s: float = Field(default=1.0, ge=0, description="Retry-After given with a throttle.")
    undelivered_rate: float = Field(default=0.01, ge=0, le=1, description="Share of accepted items whose receipt is 'failed'.")
    receipt_delay_ms: float = Field(default=200.0, ge=0, description="Time from acceptance to its receipt.")
    seed: int | None = Field(default=None, description="Seed for reproducible outcomes; unset = random.")
    dead_numbers: str = Field(default="", description="Comma-separated E.164 numbers that are always 空号 (EMPTY_NUMBER).")

    def dead(self) -> frozenset[str]:
        return frozenset(p.strip() for p in self.dead_numbers.split(",") if p.strip())


class SimulatorGateway(Gateway):
    """See the module docstring. ``clock`` (monotonic seconds) and ``sleep`` are injectable for tests."""

    capabilities = CAPABILITIES
    settings_class = SimulatorSettings

    @classmethod
    def receipt_formats(cls) -> Mapping[str, Format]:
        from broadcast.gateways.push import Format
        from broadcast.gateways.simple_receipts import parse_simulator

        return {"simulator": Format(parse_simulator, b'{"ok":true}', "application/json")}

    @classmethod
    def inbound_formats(cls) -> Mapping[str, InboundFormat]:
        from broadcast.gateways.replies import SIMULATOR_MO

        return {"simulator-mo": SIMULATOR_MO}

    def __init__(
        self,
        settings: SimulatorSettings,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__(settings, client)
        self.settings: SimulatorSettings = settings
        self._clock = clock
        self._sleep = sleep
        self._seed = settings.seed if settings.seed is not None else int.from_bytes(os.urandom(8), "big")
        self._dead = settings.dead()
        self._attempts: dict[int, int] = {}
        self._accepted: dict[int, str] = {}  # delivery id -> provider id
        self._pending: list[tuple[float, int, Receipt]] = []  # (due, seq, receipt) heap
        self._seq = 0
        # wall time = _wall0 + (clock() - _mono0): receipts carry aware UTC datetimes
        self._mono0 = clock()
        self._wall0 = datetime.now(UTC)

    def _rng(self, delivery_id: int, attempt: int) -> random.Random:
        return random.Random(f"{self._seed}:{delivery_id}:{attempt}")  # str seeds hash with SHA-512: stable

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        if not batch:
            return []
        s = self.settings
        if s.latency_ms:
            await self._sleep(s.latency_ms / 1000)
        now = self._clock()
        return [self._one(item, now) for item in batch]

    def _one(self, item: SendItem, now: float) -> SendResult:
        s = self.settings
        attempt = self._attempts.get(item.delivery_id, 0) + 1
        self._attempts[item.delivery_id] = attempt
        if not _E164.fullmatch(item.phone):
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="INVALID_NUMBER", detail="not an E.164 number",
                              recipient_fault=True)
        if item.phone in self._dead:
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="EMPTY_NUMBER", detail="空号 (simulated)",
                              recipient_fault=True)
        rng = self._rng(item.delivery_id, attempt)
        draw = rng.random()
        if draw < s.throttle_rate:
            return SendResult(
                item.delivery_id, Outcome.RETRYABLE, code="throttled", detail="simulated throttling",
                retry_after_s=s.throttle_retry_after_s,
            )
        if draw < s.throttle_rate + s.failure_rate:
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="EMPTY_NUMBER", detail="空号 (simulated)",
                              recipient_fault=True)
        provider_id = f"sim-{item.delivery_id}-{attempt}"
        self._accepted[item.delivery_id] = provider_id
        failed = rng.random() < s.undelivered_rate
        due = now + s.receipt_delay_ms / 1000
        receipt = Receipt(
            delivery_id=item.delivery_id,
            provider_id=provider_id,
            status="failed" if failed else "delivered",
            code="UNDELIV" if failed else "DELIVRD",
            at=self._wall0 + timedelta(seconds=due - self._mono0),
        )
        self._seq += 1
        heapq.heappush(self._pending, (due, self._seq, receipt))
        return SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=provider_id, code="OK")

    async def query(self, items: Sequence[SendItem]) -> list[SendResult | None]:
        """Accepted by this instance → an accepted result; otherwise ``None`` (cannot tell)."""
        out: list[SendResult | None] = []
        for item in items:
            pid = self._accepted.get(item.delivery_id)
            out.append(None if pid is None else SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=pid, code="OK"))
        return out

    async def fetch_receipts(self) -> list[Receipt]:
        """Receipts due by now, oldest first; each is returned once."""
        now = self._clock()
        due: list[Receipt] = []
        while self._pending and self._pending[0][0] <= now:
            due.append(heapq.heappop(self._pending)[2])
        return due

    def check(self) -> list[str]:
        s = self.settings
        problems = []
        if s.failure_rate + s.throttle_rate > 1:
            problems.append("BROADCAST_SIMULATOR_FAILURE_RATE + BROADCAST_SIMULATOR_THROTTLE_RATE exceed 1")
        return problems

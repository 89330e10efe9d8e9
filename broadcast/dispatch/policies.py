"""The rules a send follows, as small units that need no send loop to be tested.

=====================  =================================================================================
``effective_rate``     the message rate in force: the lower of ``BROADCAST_RATE`` and the gateway's
                       declared limit (``effective_request_rate`` likewise for requests)
``ErrorStorm``         the auto-pause rule of one message: too many of its recent attempts failed for
                       reasons that concern the gateway or the account (a refused number does not count)
``Failover``           what a failure of the current gateway leads to: the next gateway of
                       ``BROADCAST_GATEWAYS``, a pause when none is left, nothing for a gateway already left
``PerNumberCap``       SMS per phone per local day: the lower of the configured and the gateway's cap
``Deadlines``          when each message's deliveries expire: its first delivery's queueing time plus
                       ``BROADCAST_DELIVERY_DEADLINE``; nothing goes out after it
=====================  =================================================================================
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast import clock
from broadcast.config import Settings
from broadcast.db.dispatch_models import Delivery
from broadcast.db.types import table
from broadcast.gateways.base import Capabilities, Gateway, Outcome, SendResult
from broadcast.workspace import Workspace

__all__ = [
    "MIN_PAUSE_REQUESTS", "MIN_PAUSE_SAMPLES", "Deadlines", "ErrorStorm", "Failover", "FailureAction", "PerNumberCap",
    "effective_rate", "effective_request_rate", "lower",
]

N = TypeVar("N", int, float)
deliveries_t = table(Delivery)

#: The auto-pause judges a message once this many deliveries were observed and at least
#: MIN_PAUSE_REQUESTS requests failed (or once a smaller window is full): two failures of the first
#: three are no storm, nor is one failed request, however many recipients it carried.
MIN_PAUSE_SAMPLES = 10
MIN_PAUSE_REQUESTS = 3


def lower(*limits: N | None) -> N | None:
    """The lowest of the limits that are set (None: none is)."""
    return min((r for r in limits if r), default=None)


def effective_rate(ws: Workspace, gateway: Gateway | type[Gateway]) -> float | None:
    """The lower of the configured and the gateway's declared message rate (None: unlimited)."""
    return lower(ws.settings.rate, gateway.capabilities.max_per_second)


def effective_request_rate(ws: Workspace, gateway: Gateway | type[Gateway]) -> float | None:
    """The lower of the configured and the gateway's declared request rate (None: unlimited)."""
    return lower(ws.settings.request_rate, gateway.capabilities.max_requests_per_second)


class ErrorStorm:
    """The auto-pause rule of one message, over its recent requests.

    A request is one observation of the gateway, however many recipients it carried: it *failed*
    when every answer in it that says something about the gateway or the account failed
    (authentication, balance, a refused signature or template, 5xx, timeouts, resets, malformed
    answers), and *succeeded* otherwise. Answers that do not count: a failure that concerns one
    recipient only (``SendResult.recipient_fault``: an invalid or blocked number), and throttling
    (the gateway said when to come back, ``retry_after_s``) while the delivery has attempts left;
    a request with nothing else in it is no observation. So a list whose first numbers are dead
    keeps sending, one 500 to a request of 200 recipients is one failed request, and a throttled
    delivery counts once it runs out of retries.

    When more than ``max_error_rate`` of the last ``window`` observed requests failed, ``observe``
    returns the reason to pause: once the window is full, or earlier once it holds at least
    ``MIN_PAUSE_REQUESTS`` failed requests and ``MIN_PAUSE_SAMPLES`` deliveries.
    """

    def __init__(self, window: int, max_error_rate: float, min_samples: int = MIN_PAUSE_SAMPLES) -> None:
        self.requests: collections.deque[tuple[bool, int]] = collections.deque(maxlen=max(1, window))  # (failed, deliveries)
        self.max_error_rate = max_error_rate
        self.min_samples = min_samples
        self.last_failure: SendResult | None = None  # the last counted failed answer, named in the reason

    def observe(self, results: Sequence[SendResult], last_attempt: Sequence[bool] | None = None) -> str | None:
        """Count one request's answers (``last_attempt[i]``: result i's delivery has no retry
        left); the reason to pause the message, or None."""
        counted = [r for i, r in enumerate(results) if not r.recipient_fault
                   and not (r.retry_after_s is not None and r.outcome is Outcome.RETRYABLE
                            and not (last_attempt[i] if last_attempt is not None else False))]
        if counted:
            failed = all(r.outcome is not Outcome.ACCEPTED for r in counted)
            self.requests.append((failed, len(counted)))
            if failed:
                self.last_failure = counted[-1]
        seen = len(self.requests)
        failed_n = sum(f for f, _ in self.requests)
        full = seen == self.requests.maxlen
        if not full and (seen < MIN_PAUSE_REQUESTS or failed_n < MIN_PAUSE_REQUESTS
                         or sum(n for _, n in self.requests) < self.min_samples):
            return None
        if failed_n / seen <= self.max_error_rate:
            return None
        last = self.last_failure or results[-1]
        return f"{failed_n} of the last {seen} attempts failed (last: {last.code or ''} {last.detail or ''})".strip()


def account_refusal(results: Iterable[SendResult]) -> str | None:
    """The reason to stop sending through this gateway at once (no balance, bad credentials), or None."""
    for r in results:
        if r.pause:
            return f"the gateway refused the account: {r.code or ''} {r.detail or ''}".strip()
    return None


class FailureAction(StrEnum):
    IGNORE = "ignore"  # the failing gateway was already replaced: its late answers change nothing
    FAILOVER = "failover"  # the rest of the send goes through the next gateway
    PAUSE = "pause"  # no gateway left: the message pauses with the reason


class Failover:
    """The gateways of ``BROADCAST_GATEWAYS``, in order: the one in use and those left to fall back to."""

    def __init__(self, first: Gateway, fallbacks: Sequence[Gateway] = ()) -> None:
        self.current = first
        self.left = list(fallbacks)

    @property
    def current_name(self) -> str:
        return self.current.capabilities.name

    def decide(self, failing: str | None) -> FailureAction:
        """What a storm or an account refusal reported by gateway ``failing`` (None: the current
        one) leads to."""
        if failing is not None and failing != self.current_name:
            return FailureAction.IGNORE
        return FailureAction.FAILOVER if self.left else FailureAction.PAUSE

    def advance(self) -> Gateway:
        """Move on to the next gateway (``decide`` said FAILOVER) and return it."""
        self.current = self.left.pop(0)
        return self.current


@dataclass(frozen=True)
class PerNumberCap:
    """At most ``limit`` SMS per phone per local day in ``timezone``; over it: failed, reason ``cap``."""

    limit: int
    timezone: str
    reason = "over the per-number daily cap (BROADCAST_MAX_PER_NUMBER_PER_DAY)"

    @classmethod
    def in_force(cls, settings: Settings, caps: Capabilities) -> PerNumberCap | None:
        """The lower of the configured and the gateway's cap, or None when neither is set."""
        limit = lower(settings.max_per_number_per_day, caps.per_number_daily_cap)
        return cls(limit, settings.timezone) if limit else None

    def day_start(self, now: datetime) -> datetime:
        """The start of ``now``'s local day: what a phone's count covers."""
        return clock.at_local(clock.local(now, self.timezone).date(), datetime.min.time(), self.timezone)


@dataclass(frozen=True)
class Deadlines:
    """message id -> the moment its deliveries expire (messages with no deliveries have none)."""

    at: dict[int, datetime]

    @classmethod
    def load(cls, engine: Engine, message_ids: Sequence[int], deadline: timedelta) -> Deadlines:
        d = deliveries_t
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.message_id, sa.func.min(d.c.queued_at))
                .where(d.c.message_id.in_(list(message_ids)), d.c.kind == "real").group_by(d.c.message_id)
            ).all()
        return cls({mid: first + deadline for mid, first in rows})

    def passed(self, message_id: int, now: datetime) -> bool:
        at = self.at.get(message_id)
        return at is not None and now >= at

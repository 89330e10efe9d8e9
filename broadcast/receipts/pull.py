"""``broadcast receipts pull``: ask the gateways that offer a pull API about deliveries still waiting.

For every gateway named by a delivery that is ``in_doubt`` or ``accepted`` (in-doubt ones first, so
that a pull settles them before anything is resent; then the oldest sends first), the gateway is
loaded with its settings (a gateway that is not configured here is skipped with a note) and asked
through its own ``Gateway.pull_receipts(candidates, now, pull)`` (what each provider's pull does is
documented in its gateway module: ``aliyun_receipts``, ``tencent_receipts``, ``twilio_receipts``;
the default calls ``fetch_receipts()`` once when the gateway declares ``pull_receipts``). A gateway
that has nothing to pull (``Gateway.pulls_receipts()`` false) is skipped.

Each gateway gets at most ``budget`` API requests per pull (``BROADCAST_RECEIPTS_PULL_BUDGET``),
paced at its ``Gateway.pull_rate``, and stops early after repeated errors (bad credentials
would fail every request). Results go through the receipts log exactly like pushed ones: recorded
first (``store.record``, with the provider's row as the raw payload), then applied
(``store.apply_pending``), so duplicates with a push are harmless.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from broadcast import clock
from broadcast.db.dispatch_models import ACCEPTED, DELIVERED, FAILED, IN_DOUBT, Delivery
from broadcast.db.types import table
from broadcast.gateways.base import NO_PULL_API, QUERY_ERRORS, Gateway, Receipt
from broadcast.gateways.push import Candidate, PullStopped
from broadcast.receipts import store
from broadcast.workspace import Workspace

__all__ = ["Candidate", "GatewayPull", "PullSummary", "pull_once", "pull_once_async"]

deliveries_t = table(Delivery)

MAX_CONSECUTIVE_ERRORS = 3


@dataclass
class GatewayPull:
    gateway: str
    waiting: int = 0  # deliveries accepted/in_doubt through it
    asked: int = 0  # deliveries asked about in this pull
    requests: int = 0
    receipts: int = 0  # reports recorded
    errors: int = 0
    note: str | None = None  # why it was skipped or stopped

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class PullSummary:
    gateways: list[GatewayPull] = field(default_factory=list)
    recorded: int = 0
    delivered: int = 0  # deliveries that became delivered in this pull
    failed: int = 0
    settled: int = 0  # in_doubt deliveries settled (accepted, delivered or failed)
    still_in_doubt: int = 0
    flagged: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {**{k: v for k, v in asdict(self).items() if k != "gateways"},
                "gateways": [g.to_dict() for g in self.gateways]}


class _Budget:
    """At most ``limit`` requests, at most ``rate`` per second."""

    def __init__(self, limit: int, rate: float) -> None:
        self.limit, self.used = limit, 0
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    @property
    def left(self) -> int:
        return self.limit - self.used

    async def take(self) -> bool:
        if self.used >= self.limit:
            return False
        wait = self._next - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next = time.monotonic() + self.gap
        self.used += 1
        return True


Row = tuple[Receipt, dict[str, Any]]  # a report and the provider's data it came from


def candidates(ws: Workspace, gateways: Sequence[str] | None = None) -> dict[str, list[Candidate]]:
    """gateway -> its deliveries awaiting a receipt, in_doubt first, then oldest send first."""
    d = deliveries_t
    q = (sa.select(d.c.id, d.c.gateway, d.c.status, d.c.provider_id, d.c.phone, d.c.text, d.c.sent_at)
         .where(d.c.status.in_((IN_DOUBT, ACCEPTED)))
         .order_by(sa.case((d.c.status == IN_DOUBT, 0), else_=1), d.c.sent_at, d.c.id))
    if gateways:
        q = q.where(d.c.gateway.in_(list(gateways)))
    out: dict[str, list[Candidate]] = {}
    with ws.engine.connect() as conn:
        for row in conn.execute(q):
            out.setdefault(row.gateway, []).append(Candidate(*row))
    return out


# -- one gateway --------------------------------------------------------------------------------


class _Puller:
    """``broadcast.gateways.push.Pull``: the budget, the error count and the rows of one gateway's pull."""

    def __init__(self, report: GatewayPull, budget: _Budget) -> None:
        self.report, self.budget = report, budget
        self.rows: list[Row] = []
        self._consecutive = 0

    @property
    def left(self) -> int:
        return self.budget.left

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One request within the budget; None on a provider/transport error (counted)."""
        if not await self.budget.take():
            raise PullStopped
        self.report.requests += 1
        try:
            result = await fn(*args, **kwargs)
        except QUERY_ERRORS as exc:
            self.report.errors += 1
            self._consecutive += 1
            self.report.note = f"{type(exc).__name__}: {str(exc)[:200]}"
            if self._consecutive >= MAX_CONSECUTIVE_ERRORS:
                self.report.note = f"stopped after {self._consecutive} errors in a row; last: {self.report.note}"
                raise PullStopped from None
            return None
        self._consecutive = 0
        return result

    def charge(self, requests: int) -> None:
        self.budget.used += requests
        self.report.requests += requests

    def asked(self, n: int = 1) -> None:
        self.report.asked += n

    def add(self, receipt: Receipt, raw: dict[str, Any]) -> None:
        self.rows.append((receipt, raw))

    def note(self, text: str) -> None:
        self.report.note = text


async def _pull_gateway(name: str, cands: list[Candidate], budget: int, now: datetime,
                        gateway: Gateway | None = None) -> tuple[GatewayPull, list[Row]]:
    from broadcast.errors import ConfigError
    from broadcast.gateways import registry

    report = GatewayPull(name, waiting=len(cands))
    gw = gateway
    if gw is None:
        try:
            cls = registry.load(name)
            if not cls.pulls_receipts():
                report.note = NO_PULL_API
                return report, []
            gw = cls(registry.load_settings(cls))
        except ConfigError as exc:
            report.note = f"skipped: not configured here ({exc.message})"
            return report, []
    puller = _Puller(report, _Budget(budget, type(gw).pull_rate))
    try:
        await gw.pull_receipts(cands, now, puller)
    except PullStopped:
        if report.note is None:
            report.note = f"request budget ({budget}) used up; the rest waits for the next pull"
    finally:
        if gateway is None:
            await gw.aclose()
    report.receipts = len(puller.rows)
    return report, puller.rows


def _apply_all(ws: Workspace, now: datetime) -> store.Applied:
    total = store.Applied()
    cursor = 0
    while True:
        out = store.apply_pending(ws.engine, now, after_id=cursor, limit=1000)
        for name in ("scanned", "changed", "applied", "flagged", "unknown", "deferred"):
            setattr(total, name, getattr(total, name) + getattr(out, name))
        cursor = out.last_id
        if out.scanned < 1000:
            return total


async def pull_once_async(ws: Workspace, *, budget: int | None = None, gateways: Sequence[str] | None = None,
                          instances: dict[str, Gateway] | None = None) -> PullSummary:
    """One pull over every gateway with deliveries awaiting a receipt (see the module docstring).

    ``budget``: API requests per gateway (default ``BROADCAST_RECEIPTS_PULL_BUDGET``); ``gateways``:
    only these names; ``instances``: already open gateways to use by name (e.g. the worker's own,
    with its HTTP client; they are not closed here). Never raises for provider or transport errors:
    they are counted and noted per gateway."""
    from broadcast.receipts.settings import load_receipts_settings

    started = time.monotonic()
    if budget is None:
        budget = load_receipts_settings().pull_budget
    now = clock.now(ws.settings)
    waiting = candidates(ws, gateways)
    summary = PullSummary()
    jobs = [_pull_gateway(name, cands[:budget], budget, now, (instances or {}).get(name))
            for name, cands in sorted(waiting.items())]
    rows: list[tuple[str, Receipt, str]] = []
    for report, got in await asyncio.gather(*jobs):
        report.waiting = len(waiting[report.gateway])
        summary.gateways.append(report)
        rows += [(report.gateway, r, json.dumps(raw, ensure_ascii=False, default=str)) for r, raw in got]
    if rows:
        summary.recorded = store.record(ws.engine, rows, now)  # record first …
        applied = _apply_all(ws, now)  # … then apply
        summary.flagged = applied.flagged
    asked = {c.id: c.status for cands in waiting.values() for c in cands}
    if asked:
        d = deliveries_t
        with ws.engine.connect() as conn:
            after = dict(conn.execute(sa.select(d.c.id, d.c.status).where(d.c.id.in_(list(asked)))).all())
        for did, before in asked.items():
            new = after.get(did, before)
            summary.delivered += new == DELIVERED
            summary.failed += new == FAILED
            summary.settled += before == IN_DOUBT and new != IN_DOUBT
            summary.still_in_doubt += new == IN_DOUBT
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def pull_once(ws: Workspace, *, budget: int | None = None, gateways: Sequence[str] | None = None) -> PullSummary:
    """``pull_once_async`` from synchronous code (the CLI). Inside a running event loop (the
    worker) await ``pull_once_async`` instead."""
    return asyncio.run(pull_once_async(ws, budget=budget, gateways=gateways))

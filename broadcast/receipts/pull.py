"""``broadcast receipts pull``: ask the gateways that offer a pull API about deliveries still waiting.

For every gateway named by a delivery that is ``in_doubt`` or ``accepted`` (in-doubt ones first, so
that a pull settles them before anything is resent; then the oldest sends first), the gateway is
loaded with its settings (a gateway that is not configured here is skipped with a note) and asked:

==========  ===================================================================================
aliyun      ``QuerySendDetails`` per delivery: its phone, the China-time date of its send, and
            the ``BizId`` of its provider id when it has one; without one (an in-doubt send) the
            record whose ``OutId`` names the delivery (or a batch range holding it, with the
            text in ``Content``). ``SendStatus`` 3 → delivered, 2 → failed, 1 → sent (settles
            an in-doubt delivery as ``accepted``).
tencent     only with ``BROADCAST_TENCENT_PULL_RECEIPTS=true`` (Tencent enables pulling on
            request): the ``PullSmsSendStatus`` queue first, then
            ``PullSmsSendStatusByPhoneNumber`` for the deliveries the queue did not cover,
            matched by ``SerialNo`` or ``SessionContext``. Only final reports exist there.
twilio      ``GET Messages/{sid}.json`` per delivery with a sid; without one (in doubt) the
            messages to its number with its exact body (``query``): found means it was sent.
others      ``fetch_receipts()`` once when the gateway declares ``pull_receipts``; else skipped.
==========  ===================================================================================

Each gateway gets at most ``budget`` API requests per pull (``BROADCAST_RECEIPTS_PULL_BUDGET``),
paced below its documented rate limit, and stops early after repeated errors (bad credentials
would fail every request). Results go through the receipts log exactly like pushed ones: recorded
first (``store.record``, with the provider's row as the raw payload), then applied
(``store.apply_pending``), so duplicates with a push are harmless.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from broadcast import clock
from broadcast.db.dispatch_models import ACCEPTED, DELIVERED, FAILED, IN_DOUBT, Delivery
from broadcast.db.types import table
from broadcast.gateways.base import TRANSPORT_ERRORS, Gateway, Receipt
from broadcast.receipts import store
from broadcast.receipts.formats import interim
from broadcast.workspace import Workspace

__all__ = ["Candidate", "GatewayPull", "PullSummary", "pull_once", "pull_once_async"]

deliveries_t = table(Delivery)

#: Requests per second a pull makes per provider (documented limits: Aliyun QuerySendDetails 5000/s,
#: Tencent PullSmsSendStatusByPhoneNumber 20/s, Twilio ~100 concurrent requests).
RATES: dict[str, float] = {"aliyun": 50.0, "tencent": 15.0, "twilio": 20.0}
DEFAULT_RATE = 10.0
MAX_CONSECUTIVE_ERRORS = 3


@dataclass(frozen=True)
class Candidate:
    id: int
    gateway: str
    status: str
    provider_id: str | None
    phone: str
    text: str
    sent_at: datetime | None


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


# -- per provider -------------------------------------------------------------------------------


class _Stop(Exception):
    pass


class _Puller:
    def __init__(self, gw: Gateway, report: GatewayPull, budget: _Budget) -> None:
        self.gw, self.report, self.budget = gw, report, budget
        self.rows: list[Row] = []
        self._consecutive = 0

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One request within the budget; None on a provider/transport error (counted)."""
        if not await self.budget.take():
            raise _Stop
        self.report.requests += 1
        try:
            result = await fn(*args, **kwargs)
        except (LookupError, *TRANSPORT_ERRORS) as exc:
            self.report.errors += 1
            self._consecutive += 1
            self.report.note = f"{type(exc).__name__}: {str(exc)[:200]}"
            if self._consecutive >= MAX_CONSECUTIVE_ERRORS:
                self.report.note = f"stopped after {self._consecutive} errors in a row; last: {self.report.note}"
                raise _Stop from None
            return None
        self._consecutive = 0
        return result

    def add(self, receipt: Receipt, raw: dict[str, Any]) -> None:
        self.rows.append((receipt, raw))


def _cst_dates(sent_at: datetime | None, now: datetime) -> list[str]:
    from broadcast.gateways.cloud_common import CST

    at = (sent_at or now).astimezone(UTC)
    days = [at.astimezone(CST).strftime("%Y%m%d"), (at - timedelta(minutes=15)).astimezone(CST).strftime("%Y%m%d")]
    return list(dict.fromkeys(days))


async def _pull_aliyun(p: _Puller, cands: Sequence[Candidate], now: datetime) -> None:
    from broadcast.gateways.cloud_common import parse_cst, phone_key, tag_covers

    gw: Any = p.gw
    for c in cands:
        p.report.asked += 1
        biz_id = c.provider_id.partition(":")[0] if c.provider_id and ":" in c.provider_id else None
        for day in _cst_dates(c.sent_at, now):
            rows = await p.call(gw._details, c.phone, day, biz_id, max_pages=1)
            match = None
            for row in rows or []:
                if biz_id:
                    ok = phone_key(row.get("PhoneNum")) == phone_key(c.phone)
                else:
                    covers = tag_covers(row.get("OutId"), c.id)
                    ok = bool(covers) or (covers is None and c.text in str(row.get("Content") or ""))
                if ok:
                    match = row
                    break
            if match is None:
                continue
            status = str(match.get("SendStatus", ""))
            at = parse_cst(match.get("ReceiveDate")) or parse_cst(match.get("SendDate")) or now
            code = match.get("ErrCode")
            raw = {"pulled": "QuerySendDetails", "row": match}
            if status in ("2", "3"):
                kind = "delivered" if status == "3" else "failed"
                p.add(Receipt(c.id, c.provider_id, kind, None if code is None else str(code), at), raw)  # type: ignore[arg-type]
            elif c.status == IN_DOUBT:  # 1: waiting for the handset, but it was sent
                p.add(interim(c.id, c.provider_id, "accepted", f"SendStatus:{status}", at), raw)
            break


async def _pull_tencent(p: _Puller, cands: Sequence[Candidate], now: datetime) -> None:
    from broadcast.gateways.cloud_common import tag_covers
    from broadcast.gateways.tencent import parse_pull_status

    gw: Any = p.gw
    if not gw.settings.pull_receipts:
        p.report.note = ("skipped: BROADCAST_TENCENT_PULL_RECEIPTS is off (Tencent enables pulling on request); "
                         "receipts come by the push callback")
        return
    covered_ids: set[int] = set()
    covered_serials: set[str] = set()

    def take(row: dict[str, Any], api: str, delivery_id: int | None = None) -> None:
        for receipt in parse_pull_status({"PullSmsSendStatusSet": [row]}):
            if delivery_id is not None:
                receipt = replace(receipt, delivery_id=delivery_id)
            p.add(receipt, {"pulled": api, "row": row})
            if receipt.delivery_id is not None:
                covered_ids.add(receipt.delivery_id)
            if receipt.provider_id:
                covered_serials.add(receipt.provider_id)

    # 1. the queue (each report once), at most 10 pages
    for _ in range(10):
        envelope = await p.call(gw._api, "PullSmsSendStatus", {"SmsSdkAppId": gw.settings.sdk_app_id, "Limit": 100})
        rows = envelope.get("PullSmsSendStatusSet") if isinstance(envelope, dict) else None
        if not isinstance(rows, list):
            break
        for row in rows:
            if isinstance(row, dict):
                take(row, "PullSmsSendStatus")
        if len(rows) < 100:
            break
    # 2. by phone number, for the deliveries the queue did not answer
    end = int(time.time())
    for c in cands:
        if c.id in covered_ids or (c.provider_id and c.provider_id in covered_serials):
            continue
        p.report.asked += 1
        begin = max(end - 7 * 86400 + 60, int((c.sent_at or now).timestamp()) - 600)
        body = {"BeginTime": begin, "EndTime": end, "Offset": 0, "Limit": 100, "PhoneNumber": c.phone,
                "SmsSdkAppId": gw.settings.sdk_app_id}
        envelope = await p.call(gw._api, "PullSmsSendStatusByPhoneNumber", body)
        rows = envelope.get("PullSmsSendStatusSet") if isinstance(envelope, dict) else None
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict):
                continue
            serial = row.get("SerialNo")
            ok = (str(serial) == c.provider_id) if c.provider_id else tag_covers(row.get("SessionContext"), c.id) is not False
            if ok:
                take(row, "PullSmsSendStatusByPhoneNumber", c.id)
                break


async def _pull_twilio(p: _Puller, cands: Sequence[Candidate], now: datetime) -> None:
    from broadcast.gateways.base import Outcome, SendItem
    from broadcast.gateways.twilio import _receipt

    gw: Any = p.gw
    for c in cands:
        p.report.asked += 1
        if c.provider_id:
            receipt = await p.call(gw.fetch_status, c.provider_id)
            if receipt is not None:
                p.add(replace(receipt, delivery_id=c.id), {"pulled": "Messages/{sid}", "sid": c.provider_id,
                                                           "status": receipt.code})
            continue
        if p.budget.left < 2:  # query may list two days
            raise _Stop
        answers = await p.call(gw.query, [SendItem(c.id, c.phone, c.text)])
        p.budget.used += 1
        p.report.requests += 1
        found = answers[0] if answers else None
        if found is None or found.outcome is not Outcome.ACCEPTED:
            continue
        status = found.code or ""
        raw = {"pulled": "Messages?To=", "sid": found.provider_id, "status": status}
        receipt = _receipt(c.id, found.provider_id, status, None, now)
        if receipt is not None:
            p.add(receipt, raw)
        else:
            p.add(interim(c.id, found.provider_id, "accepted", status or "sent", now), raw)


async def _pull_generic(p: _Puller, cands: Sequence[Candidate], now: datetime) -> None:
    if not p.gw.capabilities.pull_receipts:
        p.report.note = "skipped: this gateway has no pull API (its receipts are pushed)"
        return
    receipts = await p.call(p.gw.fetch_receipts)
    for r in receipts or []:
        p.add(r, {"pulled": "fetch_receipts", "delivery_id": r.delivery_id, "provider_id": r.provider_id,
                  "status": r.status, "code": r.code})


async def _pull_gateway(name: str, cands: list[Candidate], budget: int, now: datetime,
                        gateway: Gateway | None = None) -> tuple[GatewayPull, list[Row]]:
    from broadcast.errors import ConfigError
    from broadcast.gateways import registry
    from broadcast.gateways.aliyun import AliyunGateway
    from broadcast.gateways.tencent import TencentGateway
    from broadcast.gateways.twilio import TwilioGateway

    report = GatewayPull(name, waiting=len(cands))
    gw = gateway
    if gw is None:
        try:
            cls = registry.load(name)
            if not (issubclass(cls, (AliyunGateway, TencentGateway, TwilioGateway)) or cls.capabilities.pull_receipts):
                report.note = "skipped: this gateway has no pull API (its receipts are pushed)"
                return report, []
            gw = cls(registry.load_settings(cls))
        except ConfigError as exc:
            report.note = f"skipped: not configured here ({exc.message})"
            return report, []
    puller = _Puller(gw, report, _Budget(budget, RATES.get(name, DEFAULT_RATE)))
    fn = (_pull_aliyun if isinstance(gw, AliyunGateway) else _pull_tencent if isinstance(gw, TencentGateway)
          else _pull_twilio if isinstance(gw, TwilioGateway) else _pull_generic)
    try:
        await fn(puller, cands, now)
    except _Stop:
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
    from broadcast.receipts.server import load_receipts_settings

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

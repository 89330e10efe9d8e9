"""Replies pulled from providers that offer them by API (``Gateway.fetch_inbound``).

``broadcast inbox pull`` and ``broadcast worker`` (every ``BROADCAST_RECEIPTS_PULL_INTERVAL_S``)
ask each gateway in use (``BROADCAST_GATEWAYS``, else ``BROADCAST_GATEWAY``) that has a pull API
for the replies since the last one stored from it (an hour's overlap: a provider's list can lag),
or for the whole reply window the first time. Everything pulled goes through ``intake`` like a
push, so a reply that was also pushed, or pulled twice, is stored once. Never raises for a
provider's or a transport error: it is noted per gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from broadcast import clock
from broadcast.db.dispatch_models import InboundMessage
from broadcast.db.types import table
from broadcast.gateways.base import QUERY_ERRORS, Gateway
from broadcast.twoway import intake
from broadcast.workspace import Workspace

__all__ = ["ReplyPull", "pull_replies", "pull_replies_async"]

inbound_t = table(InboundMessage)
OVERLAP = timedelta(hours=1)


@dataclass
class GatewayReplies:
    gateway: str
    since: str = ""
    pulled: int = 0
    new: int = 0
    note: str | None = None


@dataclass
class ReplyPull:
    gateways: list[GatewayReplies] = field(default_factory=list)
    taken: intake.Taken = field(default_factory=intake.Taken)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"gateways": [asdict(g) for g in self.gateways]}
        out.update({k: v for k, v in asdict(self.taken).items() if k != "ids"})
        return out


def _since(ws: Workspace, name: str, now: datetime, rules: intake.Rules) -> datetime:
    with ws.engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(inbound_t.c.sent_at)).where(inbound_t.c.gateway == name)).scalar()
    return max(last - OVERLAP, now - rules.reply_window) if last is not None else now - rules.reply_window


async def _pull_one(ws: Workspace, name: str, gateway: Gateway | None, now: datetime,
                    rules: intake.Rules) -> tuple[GatewayReplies, intake.Taken]:
    from broadcast.errors import ConfigError
    from broadcast.gateways import registry

    report = GatewayReplies(name)
    gw = gateway
    try:
        if gw is None:
            cls = registry.load(name)
            if not cls.pulls_inbound():
                report.note = "skipped: replies are pushed (no pull API)"
                return report, intake.Taken()
            gw = cls(registry.load_settings(cls))
        elif not type(gw).pulls_inbound():
            report.note = "skipped: replies are pushed (no pull API)"
            return report, intake.Taken()
    except ConfigError as exc:
        report.note = f"skipped: not configured here ({exc.message})"
        return report, intake.Taken()
    since = _since(ws, name, now, rules)
    report.since = since.isoformat()
    try:
        items = await gw.fetch_inbound(since)
    except QUERY_ERRORS as exc:
        report.note = f"pull failed: {exc}"
        return report, intake.Taken()
    finally:
        if gateway is None:
            await gw.aclose()
    report.pulled = len(items)
    taken = await asyncio.to_thread(intake.record, ws.engine, items, now, rules)
    report.new = taken.new
    return report, taken


async def pull_replies_async(ws: Workspace, *, gateways: Sequence[str] | None = None,
                             instances: dict[str, Gateway] | None = None) -> ReplyPull:
    """One pull of replies from every gateway in use with a pull API (see the module docstring);
    ``instances``: open gateways to use by name (not closed here)."""
    names = list(gateways) if gateways else ws.settings.gateway_names
    now = clock.now(ws.settings)
    rules = intake.Rules.of(ws.settings)
    out = ReplyPull()
    for name in names:
        report, taken = await _pull_one(ws, name, (instances or {}).get(name), now, rules)
        out.gateways.append(report)
        out.taken.add(taken)
    return out


def pull_replies(ws: Workspace, *, gateways: Sequence[str] | None = None) -> ReplyPull:
    return asyncio.run(pull_replies_async(ws, gateways=gateways))

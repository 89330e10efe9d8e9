"""Opt-outs: numbers that must never be sent to. They are keyed by phone number, not by
member, so they survive removing the member and every later import of the number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.audit_chain import note
from broadcast.db.dispatch_models import EXPIRED, QUEUED, RETRY_WAIT, Delivery
from broadcast.db.engine import transaction
from broadcast.db.types import table, utcnow
from broadcast.errors import NotFoundError
from broadcast.recipients.groups import members_t, optouts_t
from broadcast.recipients.members import parse_phone
from broadcast.recipients.phones import mask_phone
from broadcast.workspace import Workspace

deliveries_t = table(Delivery)


@dataclass
class OptOutInfo:
    phone: str
    reason: str
    created_at: datetime
    created_by: str = ""
    name: str = ""  # the member's name, when the number belongs to one
    source: str = "manual"  # manual | reply | carrier

    def to_dict(self) -> dict[str, object]:
        return {
            "phone": self.phone,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "name": self.name,
            "source": self.source,
        }


def add_optout(ws: Workspace, phone: str, reason: str = "") -> tuple[OptOutInfo, bool]:
    """Opt a number out. Returns (the opt-out, whether it is new); an existing one is kept as is."""
    e164 = parse_phone(phone, ws.settings.default_region)
    with transaction(ws.engine, write=True) as conn:
        created, _ = put_optout(conn, e164, reason=reason.strip(), source="manual", by=ws.operator, now=utcnow(),
                                why=f"opted out: {reason.strip()}" if reason.strip() else "opted out")
    return next(o for o in list_optouts(ws) if o.phone == e164), created


def put_optout(conn: Connection, phone: str, *, reason: str, source: str, by: str, now: datetime,
               inbound_id: int | None = None, take_back: bool = True, why: str | None = None,
               **audit: object) -> tuple[bool, int]:
    """Put ``phone`` (E.164) on the opt-out list inside the caller's transaction: the one way every
    opt-out is made (by hand, by a reply, from a carrier's refusal). An existing opt-out is kept as
    it is. ``take_back``: the number's queued deliveries are expired (``expire_queued``, with ``why``,
    default the reason). A new one is audited as ``optout.add`` with ``audit`` details. Returns
    (whether it is new, how many deliveries were taken back)."""
    new = conn.execute(sa.select(optouts_t.c.phone).where(optouts_t.c.phone == phone)).first() is None
    if new:
        conn.execute(optouts_t.insert().values(phone=phone, reason=reason, created_by=by, created_at=now,
                                               source=source, inbound_id=inbound_id))
    expired = expire_queued(conn, phone, why or reason, now) if take_back else 0
    if new:
        if take_back:
            audit["deliveries_expired"] = expired
        note(conn, by, "optout.add", f"phone:{mask_phone(phone)}", reason=reason, source=source, **audit)
    return new, expired


def expire_queued(conn: Connection, phone: str, why: str, now: datetime) -> int:
    """Take back the number's deliveries still waiting in sends already under way (queued or
    waiting to retry): ``expired`` with code ``OPTED_OUT``, so no later claim sends them. A delivery
    already handed to a gateway is past recall. Returns how many were expired."""
    d = deliveries_t
    result = conn.execute(
        d.update().where(d.c.phone == phone, d.c.kind == "real", d.c.status.in_((QUEUED, RETRY_WAIT)))
        .values(status=EXPIRED, error_code="OPTED_OUT", error_text=why[:500], next_attempt_at=None, updated_at=now))
    return int(result.rowcount or 0)


def list_optouts(ws: Workspace) -> list[OptOutInfo]:
    query = (
        sa.select(optouts_t, members_t.c.name)
        .outerjoin(members_t, members_t.c.phone == optouts_t.c.phone)
        .order_by(optouts_t.c.created_at, optouts_t.c.phone)
    )
    with transaction(ws.engine) as conn:
        return [OptOutInfo(r.phone, r.reason, r.created_at, r.created_by, r.name or "", r.source)
                for r in conn.execute(query)]


def remove_optout(ws: Workspace, phone: str) -> None:
    e164 = parse_phone(phone, ws.settings.default_region)
    with transaction(ws.engine, write=True) as conn:
        if not conn.execute(optouts_t.delete().where(optouts_t.c.phone == e164)).rowcount:
            raise NotFoundError(f"{e164} is not opted out", hint="see 'broadcast optout list'")
        note(conn, ws.operator, "optout.remove", f"phone:{mask_phone(e164)}")

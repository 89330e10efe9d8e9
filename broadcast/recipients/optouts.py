"""Opt-outs: numbers that must never be sent to, on one channel or on all. They are keyed by phone
number, not by member, so they survive removing the member and every later import of the number.

Channels (``CHANNELS``): ``sms`` is the ``optouts`` table (by hand, a TD reply, a carrier's
refusal); ``email``, ``wecom``, ``dingtalk`` and ``feishu`` are rows of ``channel_optouts``; ``all``
is an ``optouts`` row with ``all_channels`` set: the SMS opt-out that also covers every other
channel, present and future. An SMS opt-out is not a WeCom opt-out unless the person asked for all.

``opted_out(conn, phones)`` is what a send reads: phone -> the set of its opt-outs, and ``blocks``
says whether that set stops a given channel.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.audit_chain import note
from broadcast.db.dispatch_models import EXPIRED, QUEUED, RETRY_WAIT, Delivery
from broadcast.db.engine import transaction
from broadcast.db.types import table, utcnow
from broadcast.errors import InputError, NotFoundError
from broadcast.recipients.groups import members_t, optouts_t
from broadcast.recipients.members import parse_phone
from broadcast.recipients.optout_sets import (
    CHANNELS,
    CHOICES,
    blocks,
    channel_list,
    channel_optouts_t,
    opted_out,
    optout_channel,
)
from broadcast.recipients.phones import mask_phone
from broadcast.workspace import Workspace

__all__ = ["CHANNELS", "CHOICES", "OptOutInfo", "add_optout", "blocks", "channel_optouts_t", "expire_queued",
           "list_optouts", "opted_out", "optout_channel", "put_channel_optout", "put_optout", "remove_optout"]
deliveries_t = table(Delivery)


@dataclass
class OptOutInfo:
    phone: str
    reason: str
    created_at: datetime
    created_by: str = ""
    name: str = ""  # the member's name, when the number belongs to one
    source: str = "manual"  # manual | reply | carrier
    channels: list[str] = field(default_factory=lambda: ["sms"])  # ["all"], or some of CHANNELS

    def to_dict(self) -> dict[str, object]:
        return {
            "phone": self.phone,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "name": self.name,
            "source": self.source,
            "channels": self.channels,
        }


def check_channel(channel: str) -> str:
    name = channel.strip().lower()
    if name not in CHOICES:
        raise InputError(f"--channel {channel!r}: not a channel; channels: {', '.join(CHOICES)}")
    return name


# -- changing them -------------------------------------------------------------------------------

def add_optout(ws: Workspace, phone: str, reason: str = "", channel: str = "sms") -> tuple[OptOutInfo, bool]:
    """Opt a number out of ``channel`` (``sms``, one of the others, or ``all``). Returns (the
    opt-out, whether something changed); an existing one is kept as is."""
    e164 = parse_phone(phone, ws.settings.default_region)
    channel = check_channel(channel)
    reason = reason.strip()
    why = f"opted out: {reason}" if reason else "opted out"
    with transaction(ws.engine, write=True) as conn:
        if channel in ("sms", "all"):
            created, _ = put_optout(conn, e164, reason=reason, source="manual", by=ws.operator, now=utcnow(),
                                    why=why, all_channels=channel == "all")
        else:
            created, _ = put_channel_optout(conn, e164, channel, reason=reason, by=ws.operator, now=utcnow(), why=why)
    return next(o for o in list_optouts(ws) if o.phone == e164), created


def put_optout(conn: Connection, phone: str, *, reason: str, source: str, by: str, now: datetime,
               inbound_id: int | None = None, take_back: bool = True, why: str | None = None,
               all_channels: bool = False, **audit: object) -> tuple[bool, int]:
    """Put ``phone`` (E.164) on the opt-out list inside the caller's transaction: the one way every
    SMS opt-out is made (by hand, by a reply, from a carrier's refusal). An existing opt-out is kept as
    it is, except that ``all_channels`` widens it to every channel. ``take_back``: the number's queued
    deliveries (SMS ones; every channel's with ``all_channels``) are expired (``expire_queued``, with
    ``why``, default the reason). A new or widened one is audited as ``optout.add`` with ``audit``
    details. Returns (whether it is new or widened, how many deliveries were taken back)."""
    row = conn.execute(sa.select(optouts_t.c.all_channels).where(optouts_t.c.phone == phone)).first()
    new = row is None
    widened = row is not None and all_channels and not row.all_channels
    if new:
        conn.execute(optouts_t.insert().values(phone=phone, reason=reason, created_by=by, created_at=now,
                                               source=source, inbound_id=inbound_id, all_channels=all_channels))
    elif widened:
        conn.execute(optouts_t.update().where(optouts_t.c.phone == phone).values(all_channels=True))
    every = all_channels or bool(row is not None and row.all_channels)
    expired = expire_queued(conn, phone, why or reason, now, None if every else ("sms",)) if take_back else 0
    if new or widened:
        if take_back:
            audit["deliveries_expired"] = expired
        if all_channels:
            audit["channel"] = "all"
        note(conn, by, "optout.add", f"phone:{mask_phone(phone)}", reason=reason, source=source, **audit)
    return new or widened, expired


def put_channel_optout(conn: Connection, phone: str, channel: str, *, reason: str, by: str, now: datetime,
                       take_back: bool = True, why: str | None = None) -> tuple[bool, int]:
    """Opt ``phone`` out of one channel other than SMS, in the caller's transaction (kept as it is
    when it exists, or when the number is opted out of all channels). ``take_back`` expires its
    queued deliveries on that channel. Audited as ``optout.add`` with the channel."""
    if channel not in CHANNELS or channel == "sms":
        raise InputError(f"not a channel other than SMS: {channel!r}")
    if "all" in opted_out(conn, [phone]).get(phone, ()):
        return False, 0
    c = channel_optouts_t
    new = conn.execute(sa.select(c.c.phone).where(c.c.phone == phone, c.c.channel == channel)).first() is None
    if new:
        conn.execute(c.insert().values(phone=phone, channel=channel, reason=reason, created_by=by, created_at=now))
    expired = expire_queued(conn, phone, why or reason, now, (channel,)) if take_back else 0
    if new:
        note(conn, by, "optout.add", f"phone:{mask_phone(phone)}", reason=reason, source="manual", channel=channel,
             **({"deliveries_expired": expired} if take_back else {}))
    return new, expired


def expire_queued(conn: Connection, phone: str, why: str, now: datetime,
                  channels: Collection[str] | None = ("sms",)) -> int:
    """Take back the number's deliveries still waiting in sends already under way (queued or
    waiting to retry) on ``channels`` (opt-out channels; None: every channel): ``expired`` with code
    ``OPTED_OUT``, so no later claim sends them. A delivery already handed to a gateway is past
    recall, and a group chat's robot post (``*-robot``) is the chat's, not this number's. Returns
    how many were expired."""
    d = deliveries_t
    where = [d.c.phone == phone, d.c.kind == "real", d.c.status.in_((QUEUED, RETRY_WAIT)),
             d.c.channel.not_like("%-robot")]
    if channels is not None:
        where.append(sa.or_(*(sa.or_(d.c.channel == ch, d.c.channel.like(f"{ch}-%")) for ch in channels)))
    result = conn.execute(d.update().where(*where).values(
        status=EXPIRED, error_code="OPTED_OUT", error_text=why[:500], next_attempt_at=None, updated_at=now))
    return int(result.rowcount or 0)


def list_optouts(ws: Workspace) -> list[OptOutInfo]:
    """Every opted-out number, with its channels, oldest first."""
    o, c = optouts_t, channel_optouts_t
    with transaction(ws.engine) as conn:
        sets = opted_out(conn)
        names = dict(conn.execute(sa.select(members_t.c.phone, members_t.c.name)
                                  .where(members_t.c.phone.in_(sa.select(o.c.phone).union(sa.select(c.c.phone))))).all())
        out = {r.phone: OptOutInfo(r.phone, r.reason, r.created_at, r.created_by, names.get(r.phone, "") or "", r.source,
                                   channel_list(sets[r.phone]))
               for r in conn.execute(sa.select(o))}
        for r in conn.execute(sa.select(c).order_by(c.c.created_at)):
            if r.phone not in out:  # opted out of other channels only: the first of them speaks for it
                out[r.phone] = OptOutInfo(r.phone, r.reason, r.created_at, r.created_by, names.get(r.phone, "") or "",
                                          "manual", channel_list(sets[r.phone]))
    return sorted(out.values(), key=lambda i: (i.created_at, i.phone))


def remove_optout(ws: Workspace, phone: str, channel: str = "sms") -> frozenset[str]:
    """Let a number be reached on ``channel`` again (``all``: on every channel, every opt-out of it
    gone). Taking one channel out of an opt-out of all channels leaves the number opted out of each
    of the others (as separate rows, keeping the original reason and date). Returns the opt-outs
    left (as ``opted_out`` gives them)."""
    e164 = parse_phone(phone, ws.settings.default_region)
    channel = check_channel(channel)
    o, c = optouts_t, channel_optouts_t
    with transaction(ws.engine, write=True) as conn:
        row = conn.execute(sa.select(o).where(o.c.phone == e164)).first()
        rows = set(conn.execute(sa.select(c.c.channel).where(c.c.phone == e164)).scalars())
        every = row is not None and row.all_channels
        have = set(CHANNELS) if every else ({"sms"} if row is not None else set()) | rows
        if not have or (channel != "all" and channel not in have):
            what = "" if channel == "sms" and not have else f" of {channel}"
            raise NotFoundError(f"{e164} is not opted out{what}", hint="see 'broadcast optout list'")
        if channel == "all":
            conn.execute(o.delete().where(o.c.phone == e164))
            conn.execute(c.delete().where(c.c.phone == e164))
        else:
            if every:  # the other channels stay opted out, each on its own
                assert row is not None
                conn.execute(c.insert(), [dict(phone=e164, channel=ch, reason=row.reason, created_by=row.created_by,
                                               created_at=row.created_at)
                                          for ch in CHANNELS if ch not in ("sms", channel) and ch not in rows])
                conn.execute(o.update().where(o.c.phone == e164).values(all_channels=False))
            if channel == "sms":
                conn.execute(o.delete().where(o.c.phone == e164))
            else:
                conn.execute(c.delete().where(c.c.phone == e164, c.c.channel == channel))
        left = opted_out(conn, [e164]).get(e164, frozenset())
        note(conn, ws.operator, "optout.remove", f"phone:{mask_phone(e164)}", channel=channel,
             **({"was_all_channels": True} if every else {}), left=sorted(left))
    return left

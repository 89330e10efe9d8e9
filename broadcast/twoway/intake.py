"""Taking in replies: stored once, matched, and taken for what they are, in one transaction.

Every reply, however it came (a provider's push to the receipts endpoint, a pull, a CMPP/SMPP
link), goes through ``take_in`` inside the transaction that stores it, so by the time the provider
is answered (or the link acknowledges the PDU) its effects are committed:

1. **Stored once.** One ``inbound`` row per (gateway, provider id); a redelivered reply is a
   duplicate and does nothing more. A provider that gives no id (SMPP deliver_sm) gets one derived
   from the content: gateway, sender, our number, text and the provider's time (or the day it
   arrived), so a resend after a crash is still the same reply.
2. **Matched.** To the member by phone (E.164), and to the message it most likely answers: the
   delivery sent to that phone within ``BROADCAST_REPLY_WINDOW`` whose reply extension code (see
   ``BROADCAST_REPLY_EXTENSION_DIGITS``) the reply came back with, else the last real delivery sent
   to that phone within the window. The branch is the group that delivery was sent through, else
   the member's first group.
3. **Taken for** (``inbound.kind``), on the text trimmed, case-folded and NFKC-folded (full-width
   to half-width):
   * ``optout`` — exactly an opt-out keyword: the number joins the opt-out list (reason
     ``reply: TD to message 12``, source ``reply``), its queued deliveries of messages already
     sending are expired (``OPTED_OUT``) so no later claim takes them, audited;
   * ``resubscribe`` — exactly a re-subscribe keyword: lifts an opt-out a reply made, never one
     made by hand or recorded from a carrier's refusal (that is audited, and left);
   * ``submission`` — starts with ``BROADCAST_SUBMIT_PREFIX`` and comes from a member marked as a
     branch's submitter: a pending ``submissions`` row for that branch;
   * ``feedback`` — anything else with text: a ``new`` item in the inbox;
   * ``empty`` — nothing but blanks.

Reply text is data: it is stored as received (cut at ``BROADCAST_INBOUND_MAX_CHARS``) and never
rendered as a template.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite

from broadcast.config import Settings
from broadcast.db.audit_chain import note
from broadcast.db.dispatch_models import Delivery, InboundMessage
from broadcast.db.engine import transaction
from broadcast.db.models import Group, Member, Membership, OptOut
from broadcast.db.twoway_models import Feedback, Submission
from broadcast.db.types import table
from broadcast.gateways.base import Inbound
from broadcast.gateways.reply_codes import digits_of
from broadcast.messages.checks import fold as fold_words
from broadcast.recipients.optouts import put_optout
from broadcast.recipients.phones import mask_phone, normalize_phone

__all__ = ["OPERATOR", "Rules", "Taken", "fold", "record", "take_in"]

inbound_t = table(InboundMessage)
deliveries_t = table(Delivery)
members_t = table(Member)
memberships_t = table(Membership)
groups_t = table(Group)
optouts_t = table(OptOut)
feedback_t = table(Feedback)
submissions_t = table(Submission)

#: who the audit trail names for what a reply did
OPERATOR = "reply"
_SEPARATORS = " \t:：,，、.。-—"


def fold(text: str) -> str:
    """``text`` as keywords are compared: ``messages.checks.fold`` (NFKC, invisible characters out,
    case-folded), trimmed."""
    return fold_words(text).strip()


@dataclass(frozen=True)
class Rules:
    """What a reply means, from the settings (``Rules.of(settings)``)."""

    optout: frozenset[str]
    resubscribe: frozenset[str]
    submit_prefix: str
    reply_window: timedelta
    region: str = "CN"
    max_chars: int = 2000

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        from broadcast.clock import parse_duration

        return cls(frozenset(fold(w) for w in settings.optout_keywords if fold(w)),
                   frozenset(fold(w) for w in settings.resubscribe_keywords if fold(w)),
                   fold(settings.submit_prefix), parse_duration(settings.reply_window),
                   settings.default_region, settings.inbound_max_chars)


@dataclass
class Taken:
    """What one batch of replies did."""

    new: int = 0
    duplicates: int = 0
    optouts: int = 0
    resubscribed: int = 0
    feedback: int = 0
    submissions: int = 0
    expired: int = 0  # queued deliveries an opt-out took back
    ids: list[int] = field(default_factory=list)  # inbound ids of the new ones

    def add(self, other: Taken) -> None:
        for name in ("new", "duplicates", "optouts", "resubscribed", "feedback", "submissions", "expired"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ids += other.ids


def record(engine: Engine, items: Sequence[Inbound], now: datetime, rules: Rules) -> Taken:
    """``take_in`` in a transaction of its own."""
    if not items:
        return Taken()
    with transaction(engine, write=True) as conn:
        return take_in(conn, items, now, rules)


def take_in(conn: Connection, items: Sequence[Inbound], now: datetime, rules: Rules) -> Taken:
    """Store, match and act on ``items`` inside the caller's transaction (see the module doc)."""
    out = Taken()
    dialect_insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(inbound_t)
    insert = dialect_insert.on_conflict_do_nothing(index_elements=["gateway", "provider_id"]).returning(inbound_t.c.id)
    for item in items:
        phone = _e164(item.phone, rules.region)
        text = item.text[: rules.max_chars]
        row = dict(gateway=item.gateway[:50], provider_id=(item.provider_id or _derived_id(item, phone))[:100],
                   phone=phone, to_addr=item.to[:32], text=text, sent_at=item.at, received_at=now,
                   raw=item.raw.hex(), extension=item.extension[:32], kind="new")
        new_id = conn.execute(insert, row).scalar()
        if new_id is None:
            out.duplicates += 1
            continue
        out.new += 1
        out.ids.append(int(new_id))
        _act(conn, int(new_id), phone, text, now, rules, out, item.to, item.extension)
    return out


def _e164(phone: str, region: str) -> str:
    result = normalize_phone(phone, region, (), ranges=False)
    return (result.e164 or phone.strip())[:32]


def _derived_id(item: Inbound, phone: str) -> str:
    key = "\x1f".join((item.gateway, phone, item.to, item.text, item.at.strftime("%Y-%m-%dT%H:%M")))
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


# -- matching and acting ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Match:
    member_id: int | None
    message_id: int | None
    group_id: int | None


def _match_statements() -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    # Built once: a reply's matching is four small indexed lookups, not four statement builds.
    d = deliveries_t
    member = sa.select(members_t.c.id).where(members_t.c.phone == sa.bindparam("phone"))
    last = (sa.select(d.c.message_id, d.c.group_name)
            .where(d.c.phone == sa.bindparam("phone"), d.c.kind == "real", d.c.sent_at.is_not(None),
                   d.c.sent_at >= sa.bindparam("since", type_=d.c.sent_at.type),
                   d.c.sent_at <= sa.bindparam("now", type_=d.c.sent_at.type))
            .order_by(d.c.sent_at.desc(), d.c.id.desc()).limit(1))
    # the deliveries within the window sent with a reply extension code, newest first
    extended = (sa.select(d.c.message_id, d.c.group_name, d.c.reply_address)
                .where(d.c.phone == sa.bindparam("phone"), d.c.kind == "real", d.c.reply_address.is_not(None),
                       d.c.sent_at >= sa.bindparam("since", type_=d.c.sent_at.type),
                       d.c.sent_at <= sa.bindparam("now", type_=d.c.sent_at.type))
                .order_by(d.c.sent_at.desc(), d.c.id.desc()).limit(100))
    group = sa.select(groups_t.c.id).where(groups_t.c.name == sa.bindparam("name"))
    first_group = (sa.select(groups_t.c.id).join(memberships_t, memberships_t.c.group_id == groups_t.c.id)
                   .where(memberships_t.c.member_id == sa.bindparam("member_id")).order_by(groups_t.c.name).limit(1))
    return member, last, extended, group, first_group


_MEMBER, _LAST_SENT, _EXTENDED, _GROUP, _FIRST_GROUP = _match_statements()


def _by_extension(conn: Connection, phone: str, since: datetime, now: datetime, to: str, extension: str) -> Any:
    """The newest delivery to ``phone`` in the window whose reply address (our number + its message's
    reply extension code, or the code alone; see ``Gateway.reply_address``) the reply came back to:
    the provider's extension field (Tencent ``extend``, 云MAS ``addSerial``), or the number it was
    sent to (Kannel ``%P``, CMPP ``Dest_Id``, SMPP ``destination_addr``; a country code before it
    allowed). A reply to our bare number never matches a code: the address includes the number."""
    ext, number = digits_of(extension), digits_of(to)
    if not ext and not number:
        return None
    for row in conn.execute(_EXTENDED, {"phone": phone, "since": since, "now": now}):
        address = row.reply_address
        if address in (ext, number) or (number and len(address) >= 5 and number.endswith(address)):
            return row
    return None


def _match(conn: Connection, phone: str, now: datetime, window: timedelta, to: str = "", extension: str = "") -> _Match:
    member_id = conn.execute(_MEMBER, {"phone": phone}).scalar()
    since = now - window
    last = _by_extension(conn, phone, since, now, to, extension)
    if last is None:
        last = conn.execute(_LAST_SENT, {"phone": phone, "since": since, "now": now}).first()
    group_id = None
    if last is not None and last.group_name:
        group_id = conn.execute(_GROUP, {"name": last.group_name}).scalar()
    if group_id is None and member_id is not None:
        group_id = conn.execute(_FIRST_GROUP, {"member_id": member_id}).scalar()
    return _Match(member_id, last.message_id if last is not None else None, group_id)


def _act(conn: Connection, inbound_id: int, phone: str, text: str, now: datetime, rules: Rules, out: Taken,
         to: str = "", extension: str = "") -> None:
    m = _match(conn, phone, now, rules.reply_window, to, extension)
    folded = fold(text)
    kind = "feedback"
    if not folded:
        kind = "empty"
    elif folded in rules.optout:
        kind = "optout"
        out.expired += _opt_out(conn, inbound_id, phone, text.strip(), m.message_id, now)
        out.optouts += 1
    elif folded in rules.resubscribe:
        kind = "resubscribe"
        out.resubscribed += _resubscribe(conn, inbound_id, phone, text.strip())
    elif rules.submit_prefix and folded.startswith(rules.submit_prefix) and m.member_id is not None:
        branch = conn.execute(
            sa.select(memberships_t.c.group_id).where(memberships_t.c.member_id == m.member_id,
                                                      memberships_t.c.submitter.is_(True))
            .order_by(memberships_t.c.group_id).limit(1)).scalar()
        if branch is not None:
            kind = "submission"
            line = _after_prefix(text, rules.submit_prefix)
            conn.execute(submissions_t.insert().values(
                group_id=branch, member_id=m.member_id, inbound_id=inbound_id, source="sms", text=line,
                status="pending", created_by=OPERATOR, created_at=now))
            out.submissions += 1
    if kind == "feedback":
        conn.execute(feedback_t.insert().values(
            inbound_id=inbound_id, phone=phone, member_id=m.member_id, group_id=m.group_id, message_id=m.message_id,
            text=text, status="new", received_at=now, updated_at=now))
        out.feedback += 1
    conn.execute(inbound_t.update().where(inbound_t.c.id == inbound_id)
                 .values(member_id=m.member_id, message_id=m.message_id, kind=kind))


def _after_prefix(text: str, prefix: str) -> str:
    """The line after the submission prefix (matched folded, cut from the original text, which
    keeps its own characters: a full-width comma stays full-width)."""
    original = text.strip()
    for i in range(len(prefix), len(original) + 1):
        if fold(original[:i]) == prefix:
            return original[i:].lstrip(_SEPARATORS).strip()
    return original


def _opt_out(conn: Connection, inbound_id: int, phone: str, word: str, message_id: int | None, now: datetime) -> int:
    """Opt ``phone`` out by reply (an existing opt-out is kept as it is); expire its queued
    deliveries. Returns how many deliveries were expired."""
    reason = f"reply: {word}" + (f" to message {message_id}" if message_id is not None else "")
    new, expired = put_optout(conn, phone, reason=reason, source="reply", by=OPERATOR, now=now, inbound_id=inbound_id,
                              inbound=inbound_id)
    if not new:  # said again: audited, the opt-out kept as it was
        note(conn, OPERATOR, "optout.again", f"phone:{mask_phone(phone)}", reason=reason, source="reply",
             inbound=inbound_id, deliveries_expired=expired)
    return expired


def _resubscribe(conn: Connection, inbound_id: int, phone: str, word: str) -> int:
    """Lift an opt-out that a reply made; 1 when one was lifted."""
    row: Any = conn.execute(sa.select(optouts_t.c.source).where(optouts_t.c.phone == phone)).first()
    if row is None:
        return 0
    if row.source != "reply":
        note(conn, OPERATOR, "optout.kept", f"phone:{mask_phone(phone)}", reason=f"reply: {word}",
             source=row.source, inbound=inbound_id, why="only an opt-out made by a reply is lifted by one")
        return 0
    conn.execute(optouts_t.delete().where(optouts_t.c.phone == phone))
    note(conn, OPERATOR, "optout.remove", f"phone:{mask_phone(phone)}", reason=f"reply: {word}", inbound=inbound_id)
    return 1

"""Opt-outs: numbers that must never be sent to. They are keyed by phone number, not by
member, so they survive removing the member and every later import of the number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.types import utcnow
from broadcast.errors import NotFoundError
from broadcast.recipients.groups import members_t, optouts_t
from broadcast.recipients.members import parse_phone
from broadcast.recipients.phones import mask_phone
from broadcast.workspace import Workspace


@dataclass
class OptOutInfo:
    phone: str
    reason: str
    created_at: datetime
    created_by: str = ""
    name: str = ""  # the member's name, when the number belongs to one

    def to_dict(self) -> dict[str, object]:
        return {
            "phone": self.phone,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "name": self.name,
        }


def add_optout(ws: Workspace, phone: str, reason: str = "") -> tuple[OptOutInfo, bool]:
    """Opt a number out. Returns (the opt-out, whether it is new); an existing one is kept as is."""
    e164 = parse_phone(phone, ws.settings.default_region)
    with transaction(ws.engine, write=True) as conn:
        row = conn.execute(sa.select(optouts_t).where(optouts_t.c.phone == e164)).first()
        created = row is None
        if row is None:
            conn.execute(
                optouts_t.insert().values(
                    phone=e164, reason=reason.strip(), created_by=ws.operator, created_at=utcnow()
                )
            )
            note(conn, ws.operator, "optout.add", f"phone:{mask_phone(e164)}", reason=reason.strip())
    return next(o for o in list_optouts(ws) if o.phone == e164), created


def list_optouts(ws: Workspace) -> list[OptOutInfo]:
    query = (
        sa.select(optouts_t, members_t.c.name)
        .outerjoin(members_t, members_t.c.phone == optouts_t.c.phone)
        .order_by(optouts_t.c.created_at, optouts_t.c.phone)
    )
    with transaction(ws.engine) as conn:
        return [OptOutInfo(r.phone, r.reason, r.created_at, r.created_by, r.name or "") for r in conn.execute(query)]


def remove_optout(ws: Workspace, phone: str) -> None:
    e164 = parse_phone(phone, ws.settings.default_region)
    with transaction(ws.engine, write=True) as conn:
        if not conn.execute(optouts_t.delete().where(optouts_t.c.phone == e164)).rowcount:
            raise NotFoundError(f"{e164} is not opted out", hint="see 'broadcast optout list'")
        note(conn, ws.operator, "optout.remove", f"phone:{mask_phone(e164)}")

"""A branch's submitters: the members who hand in lines for the daily series on its behalf.

``memberships.submitter`` marks them; a reply from such a member that starts with
``BROADCAST_SUBMIT_PREFIX`` (default 投稿) is taken as the branch's submission (two-way intake).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import sqlalchemy as sa

from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.errors import NotFoundError
from broadcast.recipients.groups import clean_group_name, group_id, members_t, memberships_t
from broadcast.recipients.members import parse_phone
from broadcast.recipients.phones import mask_phone
from broadcast.workspace import Workspace


@dataclass
class SubmitterChange:
    group: str
    phone: str
    name: str
    submitter: bool
    changed: bool  # False when it already was (or was not) a submitter

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def set_submitter(ws: Workspace, group: str, phone: str, *, on: bool = True) -> SubmitterChange:
    """Mark (``on``) or unmark the member ``phone`` as a submitter of ``group``; the member must
    be in that group (directly). Audited as ``group.submitter`` when something changed."""
    name = clean_group_name(group)
    e164 = parse_phone(phone, ws.settings.default_region)
    with transaction(ws.engine, write=True) as conn:
        gid = group_id(conn, name)
        member = conn.execute(sa.select(members_t.c.id, members_t.c.name).where(members_t.c.phone == e164)).first()
        if member is None:
            raise NotFoundError(f"no member with phone {e164}", hint="see 'broadcast member list --search ...'")
        row = conn.execute(
            sa.select(memberships_t.c.id, memberships_t.c.submitter)
            .where(memberships_t.c.member_id == member.id, memberships_t.c.group_id == gid)
        ).first()
        if row is None:
            raise NotFoundError(
                f"{member.name} {e164} is not a member of {name!r}",
                hint=f"add them first: broadcast member edit {e164} --add-group {name}",
            )
        changed = bool(row.submitter) != on
        if changed:
            conn.execute(memberships_t.update().where(memberships_t.c.id == row.id).values(submitter=on))
            note(conn, ws.operator, "group.submitter", f"group:{name}", member=mask_phone(e164), submitter=on)
    return SubmitterChange(name, e164, member.name, on, changed)


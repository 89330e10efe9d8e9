"""Channels beyond SMS in the ledger: the people a group-chat post stands for, and the fallback to SMS.

A message with ``--fallback sms`` (``messages.fallback``) gets to a person by SMS when their
channel refused or failed for them. It is the **same delivery row**, moved: a row that ended
``failed`` on another channel goes back to ``queued`` on ``sms`` (its attempts start again, the
channel's attempts stay in ``delivery_attempts``, its error is kept in the text), so a person is
never sent both, and never by SMS after the channel accepted (``accepted``, ``delivered`` and
``in_doubt`` rows never move). A failed group-chat post gives each person it stood for an SMS
delivery of their own (skipped where they already have one) and is marked ``fallback_sms``.

``sweep`` does both in one transaction and is idempotent: it runs after every channel pass, so a
run killed between a channel's failure being recorded and the move finds it still to do at the next
pass. A person opted out of SMS is not moved (the row stays failed, with the channel's reason).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from broadcast.db.channel_models import DeliveryPerson
from broadcast.db.dispatch_models import FAILED, QUEUED, RETRY_WAIT, Delivery
from broadcast.db.engine import transaction
from broadcast.db.models import Message, OptOut
from broadcast.db.types import table
from broadcast.dispatch.ledger import FrozenRecipient, freeze
from broadcast.messages.channels import ROBOT_ADDRESS_PREFIX

deliveries_t = table(Delivery)
people_t = table(DeliveryPerson)
messages_t = table(Message)
optouts_t = table(OptOut)
POST_FELL_BACK = "fallback_sms"

#: (message id, name, group, phone) -> the frozen SMS text for that person
Render = Callable[[int, str, str, str], str]


def link_people(conn: Connection, message_id: int, posts: Iterable[tuple[str, Sequence[tuple[int | None, str, str]]]]) -> int:
    """Link each post (by its address) of a message just frozen to the people it stands for:
    ``(address, [(member id, phone, name), …])``."""
    d = deliveries_t
    ids = dict(conn.execute(sa.select(d.c.address, d.c.id).where(
        d.c.message_id == message_id, d.c.kind == "real", d.c.address.startswith(ROBOT_ADDRESS_PREFIX))).all())
    rows = [{"delivery_id": ids[address], "member_id": mid, "phone": phone, "name": name[:100]}
            for address, people in posts if address in ids for mid, phone, name in people]
    for i in range(0, len(rows), 5000):
        conn.execute(people_t.insert(), rows[i:i + 5000])
    return len(rows)


def _with_fallback(message_ids: Sequence[int]) -> sa.Select[tuple[int]]:
    return sa.select(messages_t.c.id).where(messages_t.c.id.in_(list(message_ids)), messages_t.c.fallback == "sms")


def sweep(engine: Engine, message_ids: Sequence[int], sms_gateway: str, now: datetime, render: Render) -> int:
    """Move what failed on another channel to SMS, for the messages with ``--fallback sms``.
    Returns how many SMS deliveries this made (moved rows, plus the people of failed posts)."""
    if not message_ids:
        return 0
    d = deliveries_t
    with transaction(engine, write=True) as conn:
        moved = conn.execute(
            d.update().where(
                d.c.message_id.in_(_with_fallback(message_ids)), d.c.kind == "real", d.c.status == FAILED,
                d.c.channel != "sms", ~d.c.address.startswith(ROBOT_ADDRESS_PREFIX),
                ~d.c.phone.in_(sa.select(optouts_t.c.phone)))
            .values(status=QUEUED, channel="sms", address="", gateway=sms_gateway, attempts=0, next_attempt_at=None,
                    error_code="fallback",
                    error_text=sa.func.substr("fell back to SMS: " + d.c.gateway + ": "
                                              + sa.func.coalesce(d.c.error_text, d.c.error_code, ""), 1, 500),
                    updated_at=now)
        ).rowcount
        posts = conn.execute(sa.select(d.c.id, d.c.message_id).where(
            d.c.message_id.in_(_with_fallback(message_ids)), d.c.kind == "real", d.c.status == FAILED,
            d.c.address.startswith(ROBOT_ADDRESS_PREFIX),
            sa.func.coalesce(d.c.error_code, "") != POST_FELL_BACK)).all()
        for post_id, message_id in posts:
            moved += _post_to_sms(conn, post_id, message_id, sms_gateway, now, render)
    return moved


def _post_to_sms(conn: Connection, post_id: int, message_id: int, sms_gateway: str, now: datetime,
                 render: Render) -> int:
    d = deliveries_t
    group = conn.execute(sa.select(d.c.group_name).where(d.c.id == post_id)).scalar_one()
    opted = sa.select(optouts_t.c.phone)
    people = conn.execute(sa.select(people_t.c.member_id, people_t.c.phone, people_t.c.name)
                          .where(people_t.c.delivery_id == post_id, ~people_t.c.phone.in_(opted))
                          .order_by(people_t.c.phone)).all()
    added = freeze(conn, message_id, (FrozenRecipient(mid, phone, name, group, render(message_id, name, group, phone))
                                      for mid, phone, name in people), now, sms_gateway)
    conn.execute(d.update().where(d.c.id == post_id).values(
        error_code=POST_FELL_BACK, updated_at=now,
        error_text=sa.func.substr("its people were sent SMS instead: " + sa.func.coalesce(d.c.error_text, ""), 1, 500)))
    return added


def move_open(engine: Engine, message_id: int, channel: str, sms_gateway: str, now: datetime, reason: str,
              render: Render) -> int:
    """A channel refused the account or kept failing for a message with ``--fallback sms``: its
    rows not yet sent there (queued, waiting to retry) go by SMS instead; posts not yet made give
    their people SMS deliveries. Returns how many SMS deliveries this made."""
    d = deliveries_t
    with transaction(engine, write=True) as conn:
        cond = [d.c.message_id == message_id, d.c.kind == "real", d.c.channel == channel,
                d.c.status.in_((QUEUED, RETRY_WAIT))]
        conn.execute(d.update().where(*cond).values(status=FAILED, error_code=channel, error_text=reason[:500],
                                                     updated_at=now))
    return sweep(engine, [message_id], sms_gateway, now, render)

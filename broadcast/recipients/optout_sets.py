"""What a send reads of the opt-outs (``optouts.py`` changes them and re-exports these): for each
opted-out phone, the set of channels it must not be reached on.

Channels (``CHANNELS``): ``sms`` is the ``optouts`` table; ``email``, ``wecom``, ``dingtalk`` and
``feishu`` are rows of ``channel_optouts``; ``all`` is an ``optouts`` row with ``all_channels``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.channel_models import OPTOUT_CHANNELS, ChannelOptOut
from broadcast.db.types import table
from broadcast.recipients.groups import optouts_t

CHANNELS: tuple[str, ...] = OPTOUT_CHANNELS  # sms, email, wecom, dingtalk, feishu
CHOICES: tuple[str, ...] = (*CHANNELS, "all")
channel_optouts_t = table(ChannelOptOut)


def opted_out(conn: Connection, phones: Iterable[str] | None = None) -> dict[str, frozenset[str]]:
    """Each opted-out phone (E.164) among ``phones`` (None: every one) -> its opt-outs: ``"sms"``
    for an SMS opt-out (the ``optouts`` table), also ``"all"`` when that one covers every channel
    (``all_channels``), and each channel of ``channel_optouts`` (``email``, ``wecom``, ``dingtalk``,
    ``feishu``). A phone without any opt-out is absent. ``blocks`` reads a set."""
    found: dict[str, set[str]] = {}
    wanted = None if phones is None else sorted(set(phones))
    chunks = [None] if wanted is None else [wanted[i:i + 500] for i in range(0, len(wanted), 500)]
    o, c = optouts_t, channel_optouts_t
    for chunk in chunks:
        q1 = sa.select(o.c.phone, o.c.all_channels)
        q2 = sa.select(c.c.phone, c.c.channel)
        if chunk is not None:
            q1, q2 = q1.where(o.c.phone.in_(chunk)), q2.where(c.c.phone.in_(chunk))
        for phone, every in conn.execute(q1):
            found.setdefault(phone, set()).update(("sms", "all") if every else ("sms",))
        for phone, channel in conn.execute(q2):
            found.setdefault(phone, set()).add(channel)
    return {phone: frozenset(chs) for phone, chs in found.items()}


def optout_channel(channel: str) -> str:
    """The opt-out channel of a sending channel: ``wecom-app`` and ``wecom-robot`` -> ``wecom``,
    ``dingtalk-robot`` -> ``dingtalk``, ``sms`` -> ``sms``, ``email`` -> ``email``."""
    return channel.split("-", 1)[0]


def blocks(optouts: Collection[str], channel: str) -> bool:
    """Whether a phone's opt-outs (a value of ``opted_out``) forbid reaching it on ``channel``
    (an opt-out channel, or a sending channel such as ``wecom-app``, see ``optout_channel``)."""
    return "all" in optouts or optout_channel(channel) in optouts


def channel_list(optouts: Collection[str]) -> list[str]:
    """A phone's opt-outs as people read them: ``["all"]``, or its channels in ``CHANNELS`` order."""
    return ["all"] if "all" in optouts else [ch for ch in CHANNELS if ch in optouts]

"""Opt-outs per channel and of all channels: what ``opted_out`` gives a send, what ``remove`` keeps,
and that each change is audited and takes back only the deliveries of its channel."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from broadcast.errors import InputError, NotFoundError
from broadcast.recipients.optouts import add_optout, blocks, list_optouts, opted_out, remove_optout

pytestmark = pytest.mark.both_stores

A, B, C = "+8613805141234", "+8613905141234", "+8613705141234"


def sets(ws, phones=None):
    with ws.engine.connect() as conn:
        return opted_out(conn, phones)


def audit(ws):
    with ws.engine.connect() as conn:
        return conn.execute(sa.text("SELECT action, details FROM audit_log WHERE action LIKE 'optout.%' ORDER BY id")).all()


def test_channels_add_up_and_all_covers_every_channel(ws):
    add_optout(ws, A, "本人回复退订")
    add_optout(ws, B, "不用邮件", channel="email")
    add_optout(ws, B, "", channel="wecom")
    info, created = add_optout(ws, C, "本人要求", channel="all")
    assert created and info.channels == ["all"]
    assert sets(ws) == {A: {"sms"}, B: {"email", "wecom"}, C: {"sms", "all"}}
    assert sets(ws, [A, "+8613605141234"]) == {A: {"sms"}}
    assert sets(ws, []) == {}
    assert blocks(sets(ws)[A], "sms") and not blocks(sets(ws)[A], "wecom-app")
    assert blocks(sets(ws)[B], "wecom-app") and blocks(sets(ws)[B], "email") and not blocks(sets(ws)[B], "sms")
    assert all(blocks(sets(ws)[C], ch) for ch in ("sms", "email", "wecom-robot", "dingtalk-robot", "feishu-robot"))
    assert [(o.phone, o.channels) for o in list_optouts(ws)] == [(A, ["sms"]), (B, ["email", "wecom"]), (C, ["all"])]
    assert [(a, '"channel"' in d) for a, d in audit(ws)] == [("optout.add", False)] + [("optout.add", True)] * 3


def test_adding_again_changes_nothing_but_all_widens_an_sms_optout(ws):
    assert add_optout(ws, A, "TD")[1] is True
    assert add_optout(ws, A, "again")[1] is False
    info, created = add_optout(ws, A, "all now", channel="all")
    assert created and info.channels == ["all"] and info.reason == "TD"  # the first reason is kept
    assert add_optout(ws, A, channel="all")[1] is False
    assert add_optout(ws, A, channel="email")[1] is False  # already covered
    assert sets(ws) == {A: {"sms", "all"}}
    assert len(audit(ws)) == 2


def test_remove_one_channel_of_all_keeps_the_others(ws):
    add_optout(ws, A, "本人要求", channel="all")
    assert remove_optout(ws, A, "wecom") == {"sms", "email", "dingtalk", "feishu"}
    assert remove_optout(ws, A) == {"email", "dingtalk", "feishu"}  # SMS back too
    assert [o.reason for o in list_optouts(ws)] == ["本人要求"]
    with pytest.raises(NotFoundError, match="is not opted out of wecom"):
        remove_optout(ws, A, "wecom")
    assert remove_optout(ws, A, "all") == frozenset()
    with pytest.raises(NotFoundError, match=r"^\+8613805141234 is not opted out$"):
        remove_optout(ws, A)
    assert [a for a, _ in audit(ws)] == ["optout.add", "optout.remove", "optout.remove", "optout.remove"]


def test_remove_sms_of_an_all_optout_keeps_every_other_channel(ws):
    add_optout(ws, A, channel="all")
    assert remove_optout(ws, A, "sms") == {"email", "wecom", "dingtalk", "feishu"}
    add_optout(ws, B, channel="email")
    assert remove_optout(ws, B, "all") == frozenset()
    assert sets(ws) == {A: {"email", "wecom", "dingtalk", "feishu"}}


def test_a_bad_channel_is_refused(ws):
    with pytest.raises(InputError, match="--channel 'sms2': not a channel; channels: sms, email, wecom"):
        add_optout(ws, A, channel="sms2")
    assert sets(ws) == {}


def test_optout_of_a_channel_takes_back_only_that_channels_queued_deliveries(ws):
    from broadcast.db.dispatch_models import QUEUED, Delivery
    from broadcast.db.types import utcnow
    from tests.helpers.rows import insert_sent_message

    now = utcnow()
    with ws.engine.begin() as conn:
        for mid, ch in enumerate(("sms", "wecom-app", "email", "wecom-robot"), start=1):  # one per (message, phone)
            insert_sent_message(conn, now, [dict(phone=A, name="张三", group_name="支部", status=QUEUED, sent_at=None,
                                                 channel=ch)], message_id=mid)
    d = Delivery.__table__

    def statuses():
        with ws.engine.connect() as conn:
            return dict(conn.execute(sa.select(d.c.channel, d.c.status)).all())

    add_optout(ws, A, channel="wecom")
    assert statuses() == {"sms": QUEUED, "wecom-app": "expired", "email": QUEUED, "wecom-robot": QUEUED}
    add_optout(ws, A)
    assert statuses()["sms"] == "expired" and statuses()["email"] == QUEUED
    add_optout(ws, A, channel="all")
    assert statuses()["email"] == "expired" and statuses()["wecom-robot"] == QUEUED  # a chat's post is the chat's

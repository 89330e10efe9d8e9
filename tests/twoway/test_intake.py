"""Replies taken in: stored once, matched to member, branch and message, and taken for an opt-out,
a re-subscribe, a submission or feedback, in the transaction that stores them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from broadcast.db.audit_chain import verify
from broadcast.gateways.base import Inbound, Outcome, SendResult
from broadcast.messages.actions import approve_message
from broadcast.messages.store import create_message
from broadcast.recipients.optouts import add_optout
from broadcast.twoway import intake
from tests.helpers.scripted import Scripted, approved_message, as_operator, run, statuses

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: BROADCAST_NOW of ``setup``


def reply(phone: str, text: str, pid: str | None = "m1", at: datetime = NOW, gateway: str = "test") -> Inbound:
    return Inbound(gateway, pid, phone, "10690001", text, at, text.encode())


def take(ws, *items: Inbound, now: datetime = NOW + timedelta(minutes=1)) -> intake.Taken:
    return intake.record(ws.engine, list(items), now, intake.Rules.of(ws.settings))


def rows(ws, sql: str) -> list[tuple]:
    with ws.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def sent_message(ws) -> int:
    """An approved message to 一支部, sent (all accepted) at 10:00."""
    mid = approved_message(ws)
    run(ws, Scripted())
    assert statuses(ws, mid) == {"accepted": 20}
    return mid


@pytest.mark.parametrize("word", ["TD", " td ", "ＴＤ", "退订", "Stop", "r", "拒收\n", "T\u200b"])
def test_an_opt_out_keyword_opts_the_number_out_with_the_message_it_answers(setup, word) -> None:
    ws = setup
    mid = sent_message(ws)
    got = take(ws, reply("13800000003", word))
    assert (got.new, got.optouts, got.feedback) == (1, 1, 0)
    [(phone, reason, source, by)] = rows(ws, "select phone, reason, source, created_by from optouts")
    assert phone == "+8613800000003" and source == "reply" and by == "reply"
    assert reason == f"reply: {word.strip()} to message {mid}"
    assert rows(ws, "select kind, member_id is not null, message_id from inbound") == [("optout", 1, mid)]
    actions = rows(ws, "select action, object from audit_log where action like 'optout.%'")
    assert actions == [("optout.add", "phone:138****0003")]
    assert verify(ws.engine).ok


def test_near_misses_are_feedback_not_opt_outs(setup) -> None:
    ws = setup
    sent_message(ws)
    for i, text in enumerate(["TD谢谢", "请退订吧", "T D", "stopp", "好的"]):
        take(ws, reply("13800000004", text, pid=f"x{i}"))
    assert rows(ws, "select count(*) from optouts") == [(0,)]
    assert rows(ws, "select count(*) from feedback where status = 'new'") == [(5,)]


def test_the_next_send_skips_an_opted_out_number_and_counts_it(setup) -> None:
    ws = setup
    sent_message(ws)
    take(ws, reply("13800000005", "TD"))
    mid = approved_message(ws, text="第二条")
    gw = Scripted()
    run(ws, gw)
    assert "+8613800000005" not in {i.phone for i in gw.sent} and len(gw.sent) == 19
    assert rows(ws, f"select optout_skipped from messages where id = {mid}") == [(1,)]


def test_an_opt_out_during_a_send_takes_back_the_queued_delivery_before_it_is_claimed(setup) -> None:
    ws = setup
    sent_message(ws)
    mid = approved_message(ws, text="第二条")
    from broadcast.dispatch.dispatcher import Dispatcher

    d = Dispatcher(as_operator(ws, "cron"), Scripted())
    d.run = None
    d.start_message(mid)  # frozen: 20 queued
    got = take(ws, reply("13800000006", "退订"))
    assert got.expired == 1
    gw = Scripted()
    run(ws, gw)
    assert "+8613800000006" not in {i.phone for i in gw.sent} and len(gw.sent) == 19
    [(status, code, text)] = rows(ws, f"select status, error_code, error_text from deliveries "
                                      f"where message_id = {mid} and phone = '+8613800000006'")
    assert (status, code) == ("expired", "OPTED_OUT") and text.startswith("reply: 退订")


def test_the_same_reply_delivered_twice_is_stored_and_acted_on_once(setup) -> None:
    ws = setup
    sent_message(ws)
    first = take(ws, reply("13800000007", "路灯不亮", pid="abc"))
    again = take(ws, reply("13800000007", "路灯不亮", pid="abc"), reply("13800000007", "路灯不亮", pid="abc"))
    assert (first.new, again.new, again.duplicates) == (1, 0, 2)
    assert rows(ws, "select count(*) from inbound") == [(1,)] and rows(ws, "select count(*) from feedback") == [(1,)]


def test_a_reply_without_a_provider_id_is_still_stored_once(setup) -> None:
    ws = setup
    a = take(ws, reply("13800000007", "路灯不亮", pid=None))
    b = take(ws, reply("13800000007", "路灯不亮", pid=None))
    c = take(ws, reply("13800000007", "路灯不亮", pid=None, at=NOW + timedelta(days=1)))  # another day: another reply
    assert (a.new, b.new, c.new) == (1, 0, 1)
    assert all(p.startswith("sha256:") for (p,) in rows(ws, "select provider_id from inbound"))


def test_feedback_is_matched_to_member_branch_and_the_last_message_within_the_window(setup) -> None:
    ws = setup
    first = sent_message(ws)
    take(ws, reply("13800000008", "路灯不亮", pid="a"))
    take(ws, reply("13800000008", "还是不亮", pid="b"), now=NOW + timedelta(days=8))  # past the 7-day window
    take(ws, reply("13912345678", "你们是谁", pid="c"))  # not a member
    got = rows(ws, "select f.text, f.member_id is not null, g.name, f.message_id from feedback f "
                   "left join groups g on g.id = f.group_id order by f.id")
    assert got == [("路灯不亮", 1, "一支部", first), ("还是不亮", 1, "一支部", None), ("你们是谁", 0, None, None)]


def test_resubscribe_lifts_only_an_opt_out_made_by_a_reply(setup) -> None:
    ws = setup
    take(ws, reply("13800000009", "TD", pid="1"))
    add_optout(as_operator(ws, "office"), "13800000010", "asked by phone")
    got = take(ws, reply("13800000009", "订阅", pid="2"), reply("13800000010", "START", pid="3"))
    assert got.resubscribed == 1
    assert rows(ws, "select phone, source from optouts") == [("+8613800000010", "manual")]
    assert rows(ws, "select action from audit_log where action in ('optout.remove', 'optout.kept') order by id") == [
        ("optout.remove",), ("optout.kept",)]


def test_a_submitters_prefixed_reply_is_a_submission_and_anyone_elses_is_feedback(setup) -> None:
    ws = setup
    with ws.engine.begin() as conn:
        conn.execute(sa.text("update memberships set submitter = true where member_id = "
                             "(select id from members where phone = '+8613800000011')"))
    take(ws, reply("13800000011", "投稿：不忘初心，牢记使命。", pid="s1"),
         reply("13800000012", "投稿 我也想投", pid="s2"))
    assert rows(ws, "select s.source, s.status, s.text, g.name from submissions s join groups g on g.id = s.group_id") == [
        ("sms", "pending", "不忘初心，牢记使命。", "一支部")]
    assert rows(ws, "select text from feedback") == [("投稿 我也想投",)]


def test_a_reply_is_cut_to_the_configured_length_and_never_rendered(setup, monkeypatch) -> None:
    monkeypatch.setenv("BROADCAST_INBOUND_MAX_CHARS", "70")
    from broadcast.config import load_settings

    rules = intake.Rules.of(load_settings())
    intake.record(setup.engine, [reply("13800000013", "{name}" + "长" * 500)], NOW, rules)
    [(text,)] = rows(setup, "select text from feedback")
    assert text == "{name}" + "长" * 64


def test_a_carrier_blacklist_refusal_records_the_number_as_blocked_and_later_sends_skip_it(setup) -> None:
    ws = setup
    blocked = SendResult(0, Outcome.PERMANENT, code="FailedOperation.PhoneNumberInBlacklist", recipient_fault=True,
                         blocked=True)
    mid = approved_message(ws)
    run(ws, Scripted({"+8613800000014": [blocked]}))
    assert statuses(ws, mid) == {"accepted": 19, "failed": 1}
    [(source, reason)] = rows(ws, "select source, reason from optouts")
    assert source == "carrier" and "PhoneNumberInBlacklist" in reason
    second = create_message(as_operator(ws, "office"), text="第二条", groups=["一支部"]).id
    approve_message(as_operator(ws, "leader"), second)
    gw = Scripted()
    run(ws, gw)
    assert len(gw.sent) == 19 and rows(ws, f"select optout_skipped from messages where id = {second}") == [(1,)]


def test_an_opt_out_by_hand_during_a_send_also_takes_back_the_queued_delivery(setup) -> None:
    ws = setup
    mid = approved_message(ws)
    from broadcast.dispatch.dispatcher import Dispatcher

    d = Dispatcher(as_operator(ws, "cron"), Scripted())
    d.start_message(mid)
    add_optout(as_operator(ws, "office"), "13800000015", "本人电话要求")
    gw = Scripted()
    run(ws, gw)
    assert len(gw.sent) == 19 and statuses(ws, mid) == {"accepted": 19, "expired": 1}
    assert rows(ws, "select details from audit_log where action = 'optout.add'")[0][0].count('"deliveries_expired":1')


def test_a_purge_erases_old_replies_but_not_feedback_still_open(setup) -> None:
    from datetime import date

    from broadcast.audit.purge import purge

    ws = setup
    take(ws, reply("13800000016", "路灯不亮", pid="p1"), reply("13800000017", "TD", pid="p2"),
         reply("13800000018", "已经修好了", pid="p3"))
    with ws.engine.begin() as conn:
        conn.execute(sa.text("update feedback set status = 'closed', category = 'fix-now' "
                             "where phone = '+8613800000018'"))
    out = purge(as_operator(ws, "office"), date(2026, 11, 28))
    assert out.replies == 2
    assert rows(ws, "select phone like 'purged-%', text, raw, kind from inbound order by id") == [
        (0, "路灯不亮", "路灯不亮".encode().hex(), "feedback"), (1, "", "", "optout"), (1, "", "", "feedback")]
    assert rows(ws, "select phone like 'purged-%', text, status, category from feedback order by id") == [
        (0, "路灯不亮", "new", None), (1, "", "closed", "fix-now")]
    take(ws, reply("13800000017", "TD", pid="p2"))  # the provider's id still stops a resend
    assert rows(ws, "select count(*) from inbound") == [(3,)]

"""``inbox reply``: one SMS back to the person through the normal message path (messages.to_phone):
the simulator gateway gets it for exactly that phone, approval and quiet hours hold it like any
message, an opted-out person gets nothing (refused with a clear line, or skipped at send time), and
braces in the answer or the reply stay literal."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery
from broadcast.db.models import Message
from tests.twoway.test_inbox import NOW, PEOPLE, add_feedback, inbox_audit, make_org

BOB = {"BROADCAST_OPERATOR": "bob"}


@pytest.fixture
def org(isolated_env, monkeypatch, request):
    monkeypatch.setenv("BROADCAST_NOW", NOW)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("BROADCAST_SIGNATURE", "【城南新区】")
    monkeypatch.setenv("BROADCAST_SIMULATOR_LATENCY_MS", "0")
    monkeypatch.setenv("BROADCAST_SIMULATOR_FAILURE_RATE", "0")
    ws = request.getfixturevalue("ws")
    make_org(ws)
    return ws


def deliveries(ws) -> list[tuple[int, str, str, str, str]]:
    d = Delivery.__table__
    with ws.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(d.c.message_id, d.c.kind, d.c.phone, d.c.name, d.c.text).order_by(d.c.id))]


def message(ws, mid: int):
    m = Message.__table__
    with ws.engine.connect() as conn:
        return conn.execute(sa.select(m).where(m.c.id == mid)).one()


@pytest.mark.both_stores
def test_reply_reaches_exactly_that_phone(org, cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_REQUIRE_APPROVAL", "false")
    item = add_feedback(org, PEOPLE["李四"], "建议早餐配上语音{name}")
    r = cli("inbox", "reply", item, "--text", "李四同志：您的建议{name}已收到，谢谢！", "--yes", "--json")
    assert r.exit_code == 0, r
    out = r.json()
    mid = out["reply"]["message_id"]
    assert (out["reply"]["status"], out["reply"]["phone"], out["reply"]["name"]) == ("approved", PEOPLE["李四"], "李四")
    assert out["send"]["accepted"] == 1 and out["send"]["completed"] == [mid]
    assert deliveries(org) == [(mid, "real", PEOPLE["李四"], "李四", "【城南新区】李四同志：您的建议{name}已收到，谢谢！")]
    row = message(org, mid)
    assert (row.to_phone, row.target_all, row.status, row.category) == (PEOPLE["李四"], False, "sent", "notice")
    [entry] = inbox_audit(org, item)
    assert (entry["action"], entry["message"], entry["status"], entry["phone"]) == \
        ("inbox.reply", mid, "approved", "138****8002")
    shown = cli("message", "show", mid, "--json").json()
    assert (shown["to_phone"], shown["audience"], shown["targets"]) == (PEOPLE["李四"], 1, [])
    assert cli("inbox", "show", item, "--json").json()["history"][0]["details"]["message"] == mid
    assert cli("audit", "verify").exit_code == 0


def test_reply_waits_for_approval_then_goes_to_that_phone_only(org, cli):
    item = add_feedback(org, PEOPLE["张三"], "路灯坏了")
    r = cli("inbox", "reply", item, "--text", "已转交二支部处理。", "--yes")
    assert r.exit_code == 0, r
    assert "waits for approval" in r.stdout and "broadcast message approve 2" in r.stdout
    assert message(org, 2).status == "pending_approval" and deliveries(org) == []
    assert f"To: {PEOPLE['张三']}; audience now: 1" in cli("message", "show", "2").stdout
    assert PEOPLE["张三"] in cli("message", "list").stdout
    assert cli("message", "approve", "2", env=BOB).exit_code == 0
    assert cli("run").exit_code == 0
    assert deliveries(org) == [(2, "real", PEOPLE["张三"], "张三", "【城南新区】已转交二支部处理。")]


def test_reply_to_an_opted_out_person_is_refused(org, cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_REQUIRE_APPROVAL", "false")
    item = add_feedback(org, PEOPLE["王五"], "不要再发了")
    assert cli("optout", "add", PEOPLE["王五"]).exit_code == 0
    r = cli("inbox", "reply", item, "--text", "好的", "--yes")
    assert r.exit_code == 1
    assert re.search(r"138\*\*\*\*8003 \(王五\) has opted out by an operator on \d{4}-\d\d-\d\d: no reply is sent to them",
                     r.stderr), r
    assert f"broadcast optout remove {PEOPLE['王五']}" in r.stderr
    assert "Traceback" not in r.stderr
    assert cli("message", "list", "--json").json()[1:] == [] and deliveries(org) == []
    assert inbox_audit(org, item) == []
    shown = cli("inbox", "show", item)
    assert "(opted out)" in shown.stdout


def test_opted_out_after_the_reply_was_written_is_skipped_at_send(org, cli):
    item = add_feedback(org, PEOPLE["王五"], "意见")
    assert cli("inbox", "reply", item, "--text", "收到", "--yes").exit_code == 0
    assert cli("optout", "add", PEOPLE["王五"]).exit_code == 0
    assert cli("message", "show", "2", "--json").json()["audience"] == 0
    assert cli("message", "approve", "2", env=BOB).exit_code == 0
    assert cli("run").exit_code == 0
    assert deliveries(org) == []
    assert message(org, 2).optout_skipped == 1


def test_reply_to_a_phone_that_is_no_member(org, cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_REQUIRE_APPROVAL", "false")
    item = add_feedback(org, "+8613900000009", "我是谁", message_id=None)
    r = cli("inbox", "reply", item, "--text", "您好，本号码为党工委通知专用。", "--yes")
    assert r.exit_code == 0, r
    assert "Sent 1" in r.stdout
    assert deliveries(org) == [(2, "real", "+8613900000009", "", "【城南新区】您好，本号码为党工委通知专用。")]


def test_reply_in_quiet_hours_waits_for_the_morning(org, cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_REQUIRE_APPROVAL", "false")
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-20T22:00")
    item = add_feedback(org, PEOPLE["张三"], "意见")
    r = cli("inbox", "reply", item, "--text", "收到", "--yes")
    assert r.exit_code == 0, r
    assert "quiet hours (21:00-07:00)" in r.stdout and deliveries(org) == []
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-21T07:05")
    assert cli("run").exit_code == 0
    assert [d[2] for d in deliveries(org)] == [PEOPLE["张三"]]


def test_reply_needs_text_and_confirmation(org, cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_REQUIRE_APPROVAL", "false")
    item = add_feedback(org, PEOPLE["张三"], "意见")
    r = cli("inbox", "reply", item, "--text", "  ", "--yes")
    assert r.exit_code == 1 and "the reply is empty" in r.stderr
    r = cli("inbox", "reply", item, "--text", "收到", input="n\n")
    assert r.exit_code == 1 and "Reply to 张三 138****8001 (inbox item 1): 收到" in r.stdout
    r = cli("inbox", "reply", item, "--text", "收到", "--json")
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert cli("inbox", "reply", 99, "--text", "收到", "--yes").exit_code == 1
    assert cli("message", "list", "--json").json()[1:] == [] and deliveries(org) == []


def test_editing_a_replys_groups_drops_its_phone(org, cli):
    item = add_feedback(org, PEOPLE["张三"], "意见")
    assert cli("inbox", "reply", item, "--text", "收到", "--yes").exit_code == 0
    assert cli("message", "edit", "2", "--to", "二支部").exit_code == 0
    shown = cli("message", "show", "2", "--json").json()
    assert (shown["to_phone"], shown["targets"], shown["audience"]) == (None, ["二支部"], 1)

"""The feedback inbox: list, show, triage, close, reopen; the cycle new -> open -> closed through the
CLI with its audit trail, the errors, the filters. Feedback rows are inserted as the intake would
(``add_feedback``; the other inbox tests import it and ``make_org``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from broadcast.clock import parse_instant
from broadcast.db.dispatch_models import InboundMessage
from broadcast.db.models import Member, Membership, Message
from broadcast.db.twoway_models import Feedback
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member

NOW = "2026-11-20T10:00"
PEOPLE = {"张三": "+8613800138001", "李四": "+8613800138002", "王五": "+8613800138003"}
ANSWERED = "{name}同志：今日精神早餐——学习贯彻全会精神。"


def make_org(ws: Any) -> None:
    """党工委 > 一支部 (张三, 李四), 二支部 (王五); message 1 sent on 2026-11-19 07:30 local."""
    add_group(ws, "党工委")
    add_group(ws, "一支部", parent="党工委")
    add_group(ws, "二支部", parent="党工委")
    add_member(ws, "张三", PEOPLE["张三"], ["一支部"])
    add_member(ws, "李四", PEOPLE["李四"], ["一支部"])
    add_member(ws, "王五", PEOPLE["王五"], ["二支部"])
    at = parse_instant("2026-11-19T07:30", "Asia/Shanghai")
    with ws.engine.begin() as conn:
        conn.execute(sa.insert(Message.__table__).values(
            body=ANSWERED, template=None, signature="【城南新区】", category="notice", status="sent",
            author="a", approver="b", created_at=at, updated_at=at, started_at=at, target_all=True, optout_skipped=0))


_seq = iter(range(1, 10**9))


def add_feedback(ws: Any, phone: str, text: str, *, received: str = "2026-11-20T09:00", message_id: int | None = 1,
                 kind: str = "feedback", **values: Any) -> int | None:
    """One reply as the intake stores it (inbound row, member and branch matched by phone) and, for
    kind ``feedback``, its inbox item (``values`` override its columns). Returns the item id."""
    at = parse_instant(received, "Asia/Shanghai")
    with ws.engine.begin() as conn:
        member = conn.execute(sa.select(Member.__table__.c.id).where(Member.__table__.c.phone == phone)).scalar()
        branch = None if member is None else conn.execute(
            sa.select(sa.func.min(Membership.__table__.c.group_id)).where(Membership.__table__.c.member_id == member)).scalar()
        inbound_id = conn.execute(sa.insert(InboundMessage.__table__).values(
            gateway="simulator", provider_id=f"mo-{next(_seq)}", phone=phone, to_addr="106900001", text=text,
            sent_at=at, received_at=at, raw=text.encode("utf-8").hex(), member_id=member, message_id=message_id,
            kind=kind)).inserted_primary_key[0]
        if kind != "feedback":
            return None
        row = dict(inbound_id=inbound_id, phone=phone, member_id=member, group_id=branch, message_id=message_id,
                   text=text, status="new", received_at=at, updated_at=at)
        return int(conn.execute(sa.insert(Feedback.__table__).values(**{**row, **values})).inserted_primary_key[0])


def inbox_audit(ws: Any, item_id: int) -> list[dict[str, Any]]:
    from broadcast.db.audit_chain import log_t

    with ws.engine.connect() as conn:
        rows = conn.execute(sa.select(log_t).where(log_t.c.object == f"inbox:{item_id}").order_by(log_t.c.id)).all()
    return [{"action": r.action, "operator": r.operator, **json.loads(r.details)} for r in rows]


@pytest.fixture
def org(isolated_env, monkeypatch, request):
    monkeypatch.setenv("BROADCAST_NOW", NOW)
    monkeypatch.setenv("COLUMNS", "250")  # tables unfolded
    ws = request.getfixturevalue("ws")
    make_org(ws)
    return ws


@pytest.mark.both_stores
def test_triage_cycle_new_open_closed_through_the_cli(org, cli):
    item = add_feedback(org, PEOPLE["张三"], "村口路灯坏了一个月，晚上学习回家不安全")
    listed = cli("inbox", "list", "--json").json()
    assert [(i["id"], i["status"], i["category"], i["name"], i["group"]) for i in listed] == \
        [(item, "new", None, "张三", "一支部")]

    r = cli("inbox", "triage", item, "--as", "supervise", "--assign", "二支部", "--due", "2026-11-25",
            "--note", "转二支部督办")
    assert r.exit_code == 0, r
    assert "triaged: open, supervise; assigned to 二支部; due 2026-11-25" in r.stdout
    r = cli("inbox", "triage", item, "--as", "立行立改", "--json")  # re-triage while open; the office's word works
    assert r.exit_code == 0, r
    got = r.json()
    assert (got["status"], got["category"], got["assigned"], got["due_date"], got["note"]) == \
        ("open", "fix-now", "二支部", "2026-11-25", "转二支部督办")  # branch, due date and note kept

    r = cli("inbox", "close", item)
    assert r.exit_code == 1 and "say why with --note" in r.stderr and "Traceback" not in r.stderr
    r = cli("inbox", "close", item, "--note", "路灯已修复，已电话回访", "--json")
    assert r.exit_code == 0, r
    assert (r.json()["status"], r.json()["category"], r.json()["note"]) == ("closed", "fix-now", "路灯已修复，已电话回访")
    assert r.json()["closed_at"].startswith("2026-11-20T02:00")

    r = cli("inbox", "close", item, "--note", "again")
    assert r.exit_code == 1 and f"inbox item {item} is already closed (since 2026-11-20 10:00)" in r.stderr
    r = cli("inbox", "triage", item, "--as", "study")
    assert r.exit_code == 1 and "is closed" in r.stderr and f"broadcast inbox reopen {item}" in r.stderr
    r = cli("inbox", "reopen", item, "--note", "群众反映又坏了", "--json")
    assert r.exit_code == 0 and (r.json()["status"], r.json()["closed_at"]) == ("open", None)
    assert cli("inbox", "close", item, "--note", "再次修复").exit_code == 0

    trail = inbox_audit(org, item)
    assert [e["action"] for e in trail] == ["inbox.triage", "inbox.triage", "inbox.close", "inbox.reopen", "inbox.close"]
    assert all(e["operator"] == "tester" for e in trail)
    assert trail[0] | {} == {**trail[0], "was": "new", "was_category": None, "category": "supervise",
                             "assigned": "二支部", "due": "2026-11-25", "note": "转二支部督办"}
    assert (trail[1]["was"], trail[1]["was_category"], trail[1]["category"]) == ("open", "supervise", "fix-now")
    assert (trail[2]["category"], trail[2]["note"]) == ("fix-now", "路灯已修复，已电话回访")
    assert trail[3]["note"] == "群众反映又坏了"
    shown = cli("inbox", "show", item, "--json").json()
    assert [h["action"] for h in shown["history"]] == [e["action"] for e in trail]
    verify = cli("audit", "verify")
    assert verify.exit_code == 0, verify


@pytest.mark.parametrize(("args", "message"), [
    (("triage", "99", "--as", "study"), "no inbox item 99"),
    (("show", "99"), "no inbox item 99"),
    (("close", "99", "--note", "x"), "no inbox item 99"),
    (("triage", "{item}", "--as", "urgent"), "unknown category 'urgent'"),
    (("triage", "{item}", "--as", "study", "--due", "2026-11-19"), "--due 2026-11-19 is before today (2026-11-20)"),
    (("triage", "{item}", "--as", "study", "--due", "next week"), "'next week' is not a date"),
    (("triage", "{item}", "--as", "study", "--assign", "三支部"), "no group named '三支部'"),
    (("close", "{item}", "--note", "done"), "is new: triage it before closing it"),
    (("reopen", "{item}", "--note", "x"), "is new, not closed: nothing to reopen"),
    (("list", "--status", "pending"), "unknown status 'pending'"),
    (("list", "--since", "2026-11-20", "--until", "2026-11-19"), "--until 2026-11-19 is before --since 2026-11-20"),
])
def test_bad_input_is_one_line_and_changes_nothing(org, cli, args, message):
    item = add_feedback(org, PEOPLE["李四"], "建议早餐内容配上语音")
    r = cli("inbox", *(a.format(item=item) for a in args))
    assert r.exit_code == 1, r
    assert message in r.stderr and "Traceback" not in r.stderr
    assert cli("inbox", "list", "--json").json()[0]["status"] == "new"
    assert inbox_audit(org, item) == []


def test_due_today_is_allowed_and_not_overdue(org, cli):
    item = add_feedback(org, PEOPLE["李四"], "建议")
    r = cli("inbox", "triage", item, "--as", "study", "--due", "2026-11-20", "--json")
    assert r.exit_code == 0 and r.json()["overdue"] is False


def test_list_filters(org, cli):
    a = add_feedback(org, PEOPLE["张三"], "一支部的意见", received="2026-11-18T08:00")
    b = add_feedback(org, PEOPLE["王五"], "二支部的意见", received="2026-11-19T23:59")
    c = add_feedback(org, "+8613900000009", "陌生号码的意见", received="2026-11-20T00:01", message_id=None)
    assert cli("inbox", "triage", a, "--as", "supervise", "--assign", "二支部", "--due", "2026-11-21").exit_code == 0
    assert cli("inbox", "triage", b, "--as", "no-action").exit_code == 0
    assert cli("inbox", "close", b, "--note", "已解释").exit_code == 0

    def ids(*args: str) -> list[int]:
        r = cli("inbox", "list", *args, "--json")
        assert r.exit_code == 0, r
        return [i["id"] for i in r.json()]

    assert ids() == [a, b, c]
    assert (ids("--status", "new"), ids("--status", "open"), ids("--status", "closed")) == ([c], [a], [b])
    assert ids("--status", "overdue") == []
    assert ids("--group", "一支部") == [a]  # the member's branch
    assert ids("--group", "二支部") == [a, b]  # assigned to it, or from its member
    assert ids("--group", "党工委") == [a, b]  # sub-groups included
    assert ids("--since", "2026-11-20") == [c]  # local dates: 23:59 on the 19th is the 19th
    assert ids("--since", "2026-11-19", "--until", "2026-11-19") == [b]
    r = cli("inbox", "list")
    assert r.exit_code == 0 and "3 items" in r.stdout and "139****0009" in r.stdout and "陌生号码的意见" in r.stdout
    assert "No inbox items match." in cli("inbox", "list", "--status", "overdue").stdout


def test_show_has_the_member_the_message_answered_and_the_history(org, cli):
    older = add_feedback(org, PEOPLE["张三"], "上次的意见", received="2026-11-10T09:00")
    add_feedback(org, PEOPLE["张三"], "TD", received="2026-11-12T09:00", kind="optout")
    item = add_feedback(org, PEOPLE["张三"], "村口路灯坏了")
    add_feedback(org, PEOPLE["李四"], "别人的意见")
    assert cli("inbox", "triage", item, "--as", "study", "--note", "列入年度课题").exit_code == 0
    d = cli("inbox", "show", item, "--json").json()
    assert d["item"]["text"] == "村口路灯坏了" and d["item"]["group"] == "一支部"
    assert d["member"] == {"name": "张三", "phone": PEOPLE["张三"], "title": "", "groups": ["一支部"]}
    assert d["answered"] == {"id": 1, "text": ANSWERED, "date": "2026-11-19", "status": "sent"}
    assert [(h["action"], h["details"]["note"]) for h in d["history"]] == [("inbox.triage", "列入年度课题")]
    assert [(o["kind"], o["text"], o["inbox_id"]) for o in d["other_replies"]] == \
        [("optout", "TD", None), ("feedback", "上次的意见", older)]
    assert d["opted_out"] is False
    r = cli("inbox", "show", item)
    assert r.exit_code == 0, r
    for part in ("Inbox item", "open, study 列入专项研究", "张三 +8613800138001", "Branch (when it came): 一支部",
                 "Reply: 村口路灯坏了", "Answers message 1 of 2026-11-19", "History", "inbox.triage", "上次的意见"):
        assert part in r.stdout, part


def test_inbound_text_is_never_a_template(org, cli):
    text = "{name}{date}{name.__class__}{{x}}"
    item = add_feedback(org, PEOPLE["张三"], text)
    assert cli("inbox", "list", "--json").json()[0]["text"] == text
    assert cli("inbox", "show", item, "--json").json()["item"]["text"] == text
    assert f"Reply: {text}" in cli("inbox", "show", item).stdout


def test_core_list_is_ordered_and_utc(org):
    from broadcast.twoway.inbox import list_items

    add_feedback(org, PEOPLE["张三"], "一")
    add_feedback(org, PEOPLE["李四"], "二")
    items = list_items(org)
    assert [i.text for i in items] == ["一", "二"]
    assert items[0].received_at == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)

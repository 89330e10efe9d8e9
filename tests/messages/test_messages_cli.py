"""message new/check/show/approve/reject/cancel/edit, templates, freezing, the two-person rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcast.messages.compose import freeze, render_for
from broadcast.messages.states import FINAL, STATES, TRANSITIONS, can_transition

BOB = {"BROADCAST_OPERATOR": "bob"}


@pytest.fixture
def org(cli, tmp_path: Path, monkeypatch):
    """党工委 > 一支部, 二支部; five people, one in two groups, one opted out; a templates folder."""
    tdir = tmp_path / "templates"
    (tdir / "series").mkdir(parents=True)
    (tdir / "会议通知.txt").write_text("{name}同志：{date}（{weekday}）下午三点开会。\n", encoding="utf-8")
    monkeypatch.setenv("BROADCAST_TEMPLATES_DIR", str(tdir))
    monkeypatch.setenv("BROADCAST_SIGNATURE", "【城南新区】")
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    for args in (("党工委",), ("一支部", "--parent", "党工委"), ("二支部", "--parent", "党工委"), ("机关",)):
        assert cli("group", "add", *args).exit_code == 0
    people = [
        ("张三", "13800138001", ["一支部", "二支部"]),  # in two targeted groups
        ("李四", "13800138002", ["一支部"]),
        ("王五", "13800138003", ["党工委"]),
        ("赵六", "13800138004", ["二支部"]),  # opted out below
        ("钱七", "13800138005", ["机关"]),
    ]
    for name, phone, groups in people:
        args = ["member", "add", name, phone]
        for g in groups:
            args += ["-g", g]
        assert cli(*args).exit_code == 0
    assert cli("optout", "add", "13800138004").exit_code == 0
    return tdir


def new(cli, *args: str, env: dict[str, str] | None = None) -> int:
    r = cli("message", "new", *args, "--json", env=env)
    assert r.exit_code == 0, r
    assert set(r.json()) == {"id", "status"}
    return r.json()["id"]


def test_new_json_shape_and_pending(cli, org):
    r = cli("message", "new", "--text", "明天下午三点党员大会", "--to", "一支部", "--json")
    assert r.exit_code == 0, r
    assert r.json() == {"id": 1, "status": "pending_approval"}


def test_no_approval_needed_when_disabled(cli, org, monkeypatch):
    monkeypatch.setenv("BROADCAST_REQUIRE_APPROVAL", "false")
    r = cli("message", "new", "--text", "通知", "--all", "--json")
    assert r.json()["status"] == "approved"


@pytest.mark.parametrize("bad", ["{name.__class__}", "{name[0]}", "{name:>99}", "{name!r}", "{0}", "{}", "{name"])
def test_template_injection_is_refused(cli, org, bad):
    r = cli("message", "new", "--text", f"你好 {bad}", "--to", "一支部")
    assert r.exit_code == 1
    assert "Traceback" not in r.stderr and ("unsafe placeholder" in r.stderr or "unbalanced" in r.stderr)
    assert cli("message", "list", "--json").json() == []


def test_injection_in_a_template_file(cli, org):
    (org / "坏.txt").write_text("{name.__init__.__globals__}", encoding="utf-8")
    r = cli("message", "new", "--template", "坏", "--to", "一支部")
    assert r.exit_code == 1 and "unsafe placeholder" in r.stderr and "template '坏'" in r.stderr
    r = cli("message", "check", "--template", "坏")
    assert r.exit_code == 1
    assert "ERROR" in cli("template", "list").stdout


def test_unknown_placeholder_fails_at_creation(cli, org):
    r = cli("message", "new", "--text", "{nam}同志好", "--to", "一支部")
    assert r.exit_code == 1 and "unknown placeholder {nam}" in r.stderr


def test_text_and_audience_options_are_required_exactly_once(cli, org):
    assert cli("message", "new", "--to", "一支部").exit_code == 1
    assert cli("message", "new", "--text", "a", "--template", "会议通知", "--to", "一支部").exit_code == 1
    assert cli("message", "new", "--text", "a").exit_code == 1
    assert cli("message", "new", "--text", "a", "--to", "一支部", "--all").exit_code == 1
    r = cli("message", "new", "--text", "a", "--to", "没有这个组")
    assert r.exit_code == 1 and "no group" in r.stderr
    assert cli("message", "new", "--template", "没有", "--to", "一支部").exit_code == 1


def test_template_is_frozen_at_creation(cli, org):
    mid = new(cli, "--template", "会议通知", "--to", "一支部", "--at", "2026-11-28 09:00")
    (org / "会议通知.txt").write_text("完全不同的内容 {name}", encoding="utf-8")
    shown = cli("message", "show", str(mid), "--json").json()
    assert shown["body"] == "{name}同志：11月28日（星期六）下午三点开会。"
    assert shown["signature"] == "【城南新区】" and shown["template"] == "会议通知"
    assert shown["preview"].startswith("【城南新区】") and "同志：11月28日（星期六）" in shown["preview"]


def test_freeze_keeps_literal_braces_and_recipient_fields():
    import datetime

    body = freeze("{{注意}} {name}，{date} {group} {phone}", datetime.date(2026, 11, 27))
    assert body == "{{注意}} {name}，11月27日 {group} {phone}"
    assert render_for(body, name="张三", group="一支部", phone="+86138") == "{注意} 张三，11月27日 一支部 +86138"


def test_show_audience_parts_and_billable(cli, org):
    mid = new(cli, "--text", "{name}同志：" + "长" * 70, "--to", "一支部", "--to", "二支部", "--to", "党工委")
    shown = cli("message", "show", str(mid), "--json").json()
    # 张三 (two groups) once, 李四, 王五 (parent group); 赵六 opted out; 钱七 not targeted
    assert shown["audience"] == 3
    assert shown["parts"] == 2 and shown["billable_parts"] == 6
    assert shown["targets"] == sorted(["一支部", "二支部", "党工委"])
    assert shown["preview_for"].startswith("张三")
    text = cli("message", "show", str(mid)).stdout
    assert "audience now: 3" in text and "billable parts: 6" in text


def test_all_reaches_everyone_but_opt_outs(cli, org, ws):
    import sqlalchemy as sa

    from broadcast.db.engine import transaction
    from broadcast.messages.audience import message_audience

    mid = new(cli, "--text", "{group}的{name}", "--all")
    assert cli("message", "show", str(mid), "--json").json()["audience"] == 4
    with transaction(ws.engine) as conn:
        people = message_audience(conn, mid)
        assert conn.execute(sa.text("select count(*) from message_targets")).scalar_one() == 0
    assert sorted(p.name for p in people) == ["张三", "李四", "王五", "钱七"]
    zhang = next(p for p in people if p.name == "张三")
    assert zhang.group == "一支部" and zhang.phone == "+8613800138001"


def test_group_audience_dedupes_and_names_a_targeted_group(cli, org, ws):
    from broadcast.db.engine import transaction
    from broadcast.messages.audience import message_audience

    mid = new(cli, "--text", "x", "--to", "二支部", "--to", "一支部")
    with transaction(ws.engine) as conn:
        people = message_audience(conn, mid)
    assert [p.name for p in people] == ["张三", "李四"]
    assert {p.phone for p in people} == {"+8613800138001", "+8613800138002"}


def test_two_person_rule(cli, org):
    mid = new(cli, "--text", "通知", "--to", "一支部")
    r = cli("message", "approve", str(mid))
    assert r.exit_code == 1 and "two-person rule" in r.stderr
    r = cli("message", "approve", str(mid), "--json", env=BOB)
    assert r.exit_code == 0, r
    assert r.json() == {"id": mid, "status": "approved", "approver": "bob"}
    shown = cli("message", "show", str(mid), "--json").json()
    assert shown["author"] == "tester" and shown["approver"] == "bob"
    r = cli("message", "approve", str(mid), env=BOB)
    assert r.exit_code == 1 and "approved" in r.stderr


def test_reject_needs_reason_and_other_operator_then_edit_resubmits(cli, org):
    mid = new(cli, "--text", "通知", "--to", "一支部")
    assert cli("message", "reject", str(mid), "--reason", "不行").exit_code == 1  # own message
    assert cli("message", "reject", str(mid), env=BOB).exit_code == 2  # --reason missing
    assert cli("message", "reject", str(mid), "--reason", " ", env=BOB).exit_code == 1
    assert cli("message", "reject", str(mid), "--reason", "时间写错了", env=BOB).exit_code == 0
    shown = cli("message", "show", str(mid), "--json").json()
    assert shown["status"] == "rejected" and shown["reject_reason"] == "时间写错了"
    r = cli("message", "edit", str(mid), "--text", "改好的通知", "--json")
    assert r.exit_code == 0 and r.json()["status"] == "pending_approval"
    assert cli("message", "approve", str(mid), env=BOB).exit_code == 0
    assert cli("message", "show", str(mid), "--json").json()["body"] == "改好的通知"


def test_editor_becomes_author(cli, org):
    mid = new(cli, "--text", "通知", "--to", "一支部")
    assert cli("message", "edit", str(mid), "--text", "bob 改的", env=BOB).exit_code == 0
    assert cli("message", "approve", str(mid), env=BOB).exit_code == 1  # bob wrote it now
    assert cli("message", "approve", str(mid)).exit_code == 0


def test_edit_only_before_approval(cli, org):
    mid = new(cli, "--text", "通知", "--to", "一支部")
    assert cli("message", "edit", str(mid), "--to", "二支部").exit_code == 0
    assert cli("message", "show", str(mid), "--json").json()["targets"] == ["二支部"]
    cli("message", "approve", str(mid), env=BOB)
    r = cli("message", "edit", str(mid), "--text", "晚了")
    assert r.exit_code == 1 and "cannot edit" in r.stderr


def test_cancel_and_illegal_transitions(cli, org, ws):
    from broadcast.errors import StateError
    from broadcast.messages.states import set_status

    mid = new(cli, "--text", "通知", "--to", "一支部")
    cli("message", "approve", str(mid), env=BOB)
    set_status(ws.engine, mid, "sending")
    set_status(ws.engine, mid, "sent")
    r = cli("message", "cancel", str(mid))
    assert r.exit_code == 1 and "cannot cancel message" in r.stderr and "it is sent" in r.stderr
    with pytest.raises(StateError):
        set_status(ws.engine, mid, "approved")
    other = new(cli, "--text", "另一条", "--to", "一支部")
    assert cli("message", "cancel", str(other), "--reason", "不发了").exit_code == 0
    shown = cli("message", "show", str(other), "--json").json()
    assert shown["status"] == "cancelled" and "不发了" in shown["status_reason"]
    assert cli("message", "approve", str(other), env=BOB).exit_code == 1
    assert cli("message", "cancel", "999").exit_code == 1


def test_state_table():
    assert set(STATES) == {"draft", "pending_approval", "approved", "held", "sending", "paused", "sent",
                           "rejected", "cancelled", "expired"}
    assert FINAL == {"sent", "cancelled", "expired"}
    for a, b in [("draft", "pending_approval"), ("pending_approval", "approved"), ("approved", "sending"),
                 ("sending", "sent"), ("approved", "paused"), ("sending", "paused"), ("paused", "approved"),
                 ("paused", "sending"), ("approved", "expired"), ("pending_approval", "rejected"),
                 ("approved", "held"), ("held", "approved"), ("held", "cancelled"), ("held", "expired")]:
        assert can_transition(a, b), (a, b)
    for a, b in [("sent", "cancelled"), ("pending_approval", "sending"), ("draft", "sent"),
                 ("expired", "approved"), ("approved", "sent"), ("held", "sending"), ("pending_approval", "held")]:
        assert not can_transition(a, b), (a, b)
    assert all(nxt <= set(STATES) for nxt in TRANSITIONS.values())


def test_pause_resume_for_dispatch(cli, org, ws):
    from broadcast.messages.states import set_status

    mid = new(cli, "--text", "通知", "--to", "一支部")
    cli("message", "approve", str(mid), env=BOB)
    assert set_status(ws.engine, mid, "paused", reason="operator paused") == "approved"
    assert set_status(ws.engine, mid, "approved") == "paused"


def test_check_json_shape(cli, org, monkeypatch):
    monkeypatch.setenv("BROADCAST_BANNED_WORDS", "彩票")
    r = cli("message", "check", "--text", " 买彩票 www.example.com 【活动】", "--category", "marketing", "--json")
    assert r.exit_code == 0, r
    data = r.json()
    assert {"length", "encoding", "parts", "warnings"} <= set(data)
    assert data["encoding"] == "UCS-2" and data["parts"] == 1
    assert data["length"] == len("【城南新区】 买彩票 www.example.com 【活动】")
    codes = [w["code"] for w in data["warnings"]]
    assert {"whitespace", "brackets_in_body", "url", "missing_unsubscribe", "banned_word"} <= set(codes)
    assert all(set(w) == {"code", "message"} for w in data["warnings"])


def test_check_template_and_long_text(cli, org):
    r = cli("message", "check", "--template", "会议通知", "--json")
    assert r.exit_code == 0 and r.json()["warnings"] == []
    r = cli("message", "check", "--text", "字" * 200, "--json")
    assert r.json()["parts"] == 4 and "too_many_parts" in [w["code"] for w in r.json()["warnings"]]
    r = cli("message", "check", "--text", "x")
    assert r.exit_code == 0 and "SMS part" in r.stdout


def test_list_and_status_filter(cli, org):
    a = new(cli, "--text", "一", "--to", "一支部")
    b = new(cli, "--text", "二", "--to", "一支部")
    cli("message", "cancel", str(b))
    assert [m["id"] for m in cli("message", "list", "--json").json()] == [a, b]
    assert [m["id"] for m in cli("message", "list", "--status", "cancelled", "--json").json()] == [b]
    assert cli("message", "list", "--status", "nope").exit_code == 1
    assert "2 messages" in cli("message", "list").stdout


def test_at_in_the_past_is_refused(cli, org):
    r = cli("message", "new", "--text", "x", "--to", "一支部", "--at", "2026-11-27 09:59")
    assert r.exit_code == 1 and "in the past" in r.stderr
    assert cli("message", "new", "--text", "x", "--to", "一支部", "--at", "11/28 9am").exit_code == 1


def test_template_list_and_show(cli, org):
    (org / "series" / "早餐.txt").write_text("# c\n\n第一句\n第二句\n", encoding="utf-8")
    data = cli("template", "list", "--json").json()
    assert [(t["name"], t["kind"], t["lines"]) for t in data] == [("会议通知", "template", 1), ("早餐", "series", 2)]
    assert data[0]["placeholders"] == ["name", "date", "weekday"]
    shown = cli("template", "show", "会议通知", "--json").json()
    assert shown["check"]["parts"] == 1
    assert cli("template", "show", "没有").exit_code == 1
    assert cli("template", "show", "../etc/passwd").exit_code == 1


def test_shipped_templates_are_valid_and_short():
    from broadcast.messages.compose import SAMPLE, check_body
    from broadcast.messages.templates import list_templates, load_series

    folder = Path(__file__).resolve().parents[2] / "templates"
    items = list_templates(folder)
    assert {"会议通知", "学习提醒"} <= {t.name for t in items}
    assert all(t.error is None for t in items)
    import datetime

    lines = load_series(folder, "精神早餐").lines
    assert len(lines) >= 40
    for line in lines:
        body = freeze(line, datetime.date(2026, 11, 27))
        report = check_body(body, signature="【城南新区】", max_parts=3, category="notice", banned_words=(),
                            recipient=SAMPLE)
        assert report.parts == 1 and report.warnings == [], line

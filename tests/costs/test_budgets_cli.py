"""Monthly budgets through the real CLI, with several operators: a message over budget is held
(at approval, or when sending starts), is not sent by run or send, says why in show/list/due, and
is released by a budget that makes room or by an overrun approved by another operator than its
author; the audit trail records each step. Bad input: one error line, exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.both_stores

LEADER = {"BROADCAST_OPERATOR": "leader"}
CHIEF = {"BROADCAST_OPERATOR": "chief"}
TEXT = "通知：明天下午三点开会"  # one part each, signed: ¥0.05 a person


@pytest.fixture
def org(cli, monkeypatch):
    """党工委 > 一支部 (4 people), 二支部 (3); 机关 (2) outside it. Console gateway at ¥0.05 a part."""
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_GATEWAY", "console")
    monkeypatch.setenv("BROADCAST_PRICE_CONSOLE", "0.05")
    monkeypatch.setenv("BROADCAST_SIGNATURE", "【城南新区】")
    for args in (("党工委",), ("一支部", "--parent", "党工委"), ("二支部", "--parent", "党工委"), ("机关",)):
        ok(cli, "group", "add", *args)
    n = 0
    for group, size in (("一支部", 4), ("二支部", 3), ("机关", 2)):
        for _ in range(size):
            n += 1
            ok(cli, "member", "add", f"党员{n}", f"138001380{n:02d}", "-g", group)
    return cli


def ok(cli: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    r = cli(*args, env=env)
    assert r.exit_code == 0, r
    return r


def error_line(r: Any, *needles: str) -> str:
    """Exit 1, one ``Error:`` line naming the problem (and at most a hint under it), no traceback."""
    assert r.exit_code == 1, r
    lines = r.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("Error: "), r
    assert "Traceback" not in r.stderr + r.stdout
    for n in needles:
        assert n in lines[0], (n, r)
    return str(lines[0])


def new(cli: Any, *to: str) -> int:
    args = [a for g in to for a in ("--to", g)]
    return int(ok(cli, "message", "new", "--text", TEXT, *args, "--json").json()["id"])


def approve(cli: Any, mid: int, *extra: str, env: dict[str, str] = LEADER) -> dict[str, Any]:
    return ok(cli, "message", "approve", str(mid), *extra, "--json", env=env).json()  # type: ignore[no-any-return]


def show(cli: Any, mid: int) -> dict[str, Any]:
    return ok(cli, "message", "show", str(mid), "--json").json()  # type: ignore[no-any-return]


def actions(cli: Any) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(e["action"], e["operator"], e["object"], e["details"]) for e in ok(cli, "audit", "log", "--json").json()]


def test_held_at_approval_released_by_a_second_persons_overrun_approval(org):
    cli = org
    r = ok(cli, "group", "budget", "党工委", "--monthly", "0.30", "--json").json()
    assert r["monthly"] == "0.30" and r["previous"] is None and r["released"] == []
    first = new(cli, "一支部")
    assert approve(cli, first)["status"] == "approved"  # 4 × ¥0.05 = ¥0.20: within ¥0.30
    ok(cli, "run")
    assert show(cli, first)["status"] == "sent"

    second = new(cli, "二支部")
    assert show(cli, second)["cost"]["estimate"]["cost"] == "0.15"
    held = approve(cli, second)
    assert held["status"] == "held"
    reason = held["reason"]
    assert reason == "over budget: 党工委 2026-11: spent ≈ ¥0.20 + this message ≈ ¥0.15 > ¥0.30 (over by ≈ ¥0.05)"
    # it says why everywhere, and nothing of it goes out
    shown = show(cli, second)
    assert shown["status"] == "held" and shown["status_reason"] == reason
    assert "Held, nothing of it is sent" in ok(cli, "message", "show", str(second)).stdout
    listed = {m["id"]: m for m in ok(cli, "message", "list", "--json").json()}
    assert listed[second]["status"] == "held" and listed[second]["status_reason"] == reason
    assert "held:" in ok(cli, "message", "list").stdout
    waiting = {w["id"]: w for w in ok(cli, "due", "--json").json()["waiting"]}
    assert waiting[second]["code"] == "held" and reason in waiting[second]["reason"]
    assert f"message approve {second} --over-budget" in waiting[second]["reason"]
    ok(cli, "run")
    assert sum(show(cli, second)["deliveries"].values()) == 0
    error_line(cli("send", str(second), "--yes"), f"message {second} is held", "over budget")
    error_line(cli("message", "approve", str(second), env=LEADER), "already approved and held")

    # the author cannot approve the overrun of their own message; another operator can
    error_line(cli("message", "approve", str(second), "--over-budget"), "two-person rule")
    assert show(cli, second)["status"] == "held"
    r = approve(cli, second, "--over-budget", env=CHIEF)
    assert r == {"id": second, "status": "approved", "approver": "leader", "over_budget_by": "chief"}
    r = ok(cli, "run", "--json").json()
    assert r["completed"] == [second] and r["held"] == []
    assert show(cli, second)["status"] == "sent"

    line = ok(cli, "group", "budget", "党工委", "--json").json()
    assert (line["spent"]["cost"], line["left"], line["percent"]) == ("0.35", "-0.05", 116.7)
    budgets = ok(cli, "report", "--by", "group", "--json").json()["budgets"]
    assert [(b["group"], b["month"], b["monthly"], b["spent"]["cost"]) for b in budgets] == \
        [("党工委", "2026-11", "0.30", "0.35")]
    assert "OVER by" in ok(cli, "report", "--by", "group").stdout

    trail = actions(cli)
    assert ("budget.set", "tester", "group:党工委", {"monthly": "0.30", "previous": None}) in trail
    holds = [(op, d) for a, op, o, d in trail if a == "message.hold" and o == f"message:{second}"]
    assert holds == [("leader", {"stage": "approval", "overruns": [
        {"group": "党工委", "month": "2026-11", "budget": "0.30", "spent": "0.20", "committed": "0", "this": "0.15",
         "problem": None, "over_by": "0.05"}]})]
    (over,) = [(op, d) for a, op, o, d in trail if a == "message.over_budget"]
    assert over[0] == "chief" and over[1]["author"] == "tester" and over[1]["held"] == reason
    assert over[1]["estimate"]["cost"] == "0.15"
    order = [a for a, _, o, _ in trail if o == f"message:{second}"]
    assert order.index("message.approve") < order.index("message.hold") < order.index("message.over_budget") \
        < order.index("send.start")
    ok(cli, "audit", "verify")


def test_raising_the_budget_releases_what_fits_now(org):
    cli = org
    ok(cli, "group", "budget", "一支部", "--monthly", "0.10")
    mid = new(cli, "党工委")  # 一支部's share: 4 × ¥0.05 = ¥0.20
    assert approve(cli, mid)["status"] == "held"
    assert "一支部 2026-11" in show(cli, mid)["status_reason"]
    r = ok(cli, "group", "budget", "一支部", "--monthly", "0.15", "--json").json()
    assert r["released"] == [] and r["previous"] == "0.10"
    assert "> ¥0.15" in show(cli, mid)["status_reason"]  # still held, with the new figures
    r = ok(cli, "group", "budget", "一支部", "--monthly", "0.20", "--json").json()
    assert r["released"] == [mid]
    assert show(cli, mid)["status"] == "approved"
    assert ok(cli, "run", "--json").json()["completed"] == [mid]
    releases = [(op, d) for a, op, o, d in actions(cli) if a == "message.release"]
    assert releases == [("tester", {"why": "budget of 一支部 set to ¥0.20 by tester"})]


def test_removing_a_budget_releases_and_the_parents_budget_covers_its_branches(org):
    cli = org
    ok(cli, "group", "budget", "党工委", "--monthly", "0.10")
    outside = new(cli, "机关")  # not under 党工委: no budget applies
    assert approve(cli, outside)["status"] == "approved"
    branch = new(cli, "二支部")  # ¥0.15 of 党工委's ¥0.10
    assert approve(cli, branch)["status"] == "held"
    assert "党工委 2026-11" in show(cli, branch)["status_reason"]
    r = ok(cli, "group", "budget", "党工委", "--remove", "--json").json()
    assert r["released"] == [branch] and r["monthly"] is None
    assert ("budget.remove", "tester", "group:党工委", {"previous": "0.10"}) in actions(cli)
    error_line(cli("group", "budget", "党工委", "--remove"), "no budget to remove")


def test_held_when_sending_starts_if_the_month_no_longer_has_room(org):
    cli = org
    mid = new(cli, "党工委")  # ¥0.35
    assert approve(cli, mid)["status"] == "approved"
    ok(cli, "group", "budget", "党工委", "--monthly", "0.30")  # set after the approval
    r = cli("run")
    assert r.exit_code == 3, r  # a send that needs attention
    assert (f"message {mid} held, nothing of it sent: over budget: 党工委 2026-11: spent ≈ ¥0.00 + this message "
            "≈ ¥0.35 > ¥0.30 (over by ≈ ¥0.05)") in " ".join(r.stderr.split())
    shown = show(cli, mid)
    assert shown["status"] == "held" and sum(shown["deliveries"].values()) == 0  # the frozen rows taken back
    stages = [d["stage"] for a, _, _, d in actions(cli) if a == "message.hold"]
    assert stages == ["start"]
    assert approve(cli, mid, "--over-budget", env=CHIEF)["status"] == "approved"
    assert ok(cli, "run", "--json").json()["completed"] == [mid]  # an approved overrun is not held again

    later = new(cli, "机关", "一支部")  # ¥0.30, in a month with ¥0.35 spent of 党工委's ¥0.30 -> its ¥0.20 share
    assert approve(cli, later)["status"] == "held"
    ok(cli, "group", "budget", "党工委", "--monthly", "0.55")  # released: 0.35 + 0.20
    ok(cli, "group", "budget", "党工委", "--monthly", "0.50")  # lowered after the release
    r = cli("run", "--json")
    assert r.exit_code == 3 and [h["id"] for h in r.json()["held"]] == [later] and r.json()["started"] == []


def test_send_shows_the_estimate_and_the_budget_it_would_overrun(org):
    cli = org
    mid = new(cli, "党工委")
    approve(cli, mid)
    r = cli("send", str(mid), input="n\n")
    assert r.exit_code == 1 and "7 billable SMS parts, ≈ ¥0.35 (console ¥0.05 a part)" in r.stdout
    ok(cli, "group", "budget", "二支部", "--monthly", "0.10")
    r = cli("send", str(mid), input="n\n")
    assert "Held when it starts, nothing sent: over budget: 二支部 2026-11" in r.stdout


def test_approved_messages_due_earlier_count_at_approval(org):
    cli = org
    ok(cli, "group", "budget", "党工委", "--monthly", "0.35")
    a, b, c = new(cli, "一支部"), new(cli, "二支部"), new(cli, "一支部")  # ¥0.20, ¥0.15, ¥0.20
    assert approve(cli, a)["status"] == "approved"
    assert approve(cli, b)["status"] == "approved"  # 0.20 + 0.15 = 0.35: exactly the budget
    held = approve(cli, c)
    assert held["status"] == "held" and "approved before it ≈ ¥0.35" in held["reason"]
    ok(cli, "message", "cancel", str(a))  # b ¥0.15 + c ¥0.20 fit now
    assert ok(cli, "group", "budget", "党工委", "--monthly", "0.35", "--json").json()["released"] == [c]


def test_each_message_of_a_series_counts_in_its_own_month(org, tmp_path: Path):
    cli = org
    ok(cli, "group", "budget", "一支部", "--monthly", "0.40")  # two days a month for 4 people
    series = tmp_path / "早餐.txt"
    series.write_text("\n".join(f"第{i}天：学习" for i in range(1, 6)) + "\n", encoding="utf-8")
    ok(cli, "schedule", "daily", "--series", str(series), "--to", "一支部", "--time", "07:30",
       "--start", "2026-11-28", "--days", "5")
    r = ok(cli, "schedule", "approve", "1", "--json", env=LEADER).json()
    assert len(r["approved"]) == 5 and [h["id"] for h in r["held"]] == [3]
    days = {m["date"]: m["status"] for m in ok(cli, "schedule", "show", "1", "--json").json()["messages"]}
    assert days == {"2026-11-28": "approved", "2026-11-29": "approved", "2026-11-30": "held",
                    "2026-12-01": "approved", "2026-12-02": "approved"}
    ok(cli, "schedule", "cancel", "1")
    assert show(cli, 3)["status"] == "cancelled"


def test_editing_a_held_message_sends_it_back_to_approval(org):
    cli = org
    ok(cli, "group", "budget", "党工委", "--monthly", "0.10")
    mid = new(cli, "一支部")
    assert approve(cli, mid)["status"] == "held"
    ok(cli, "message", "edit", str(mid), "--to", "机关")
    assert show(cli, mid)["status"] == "pending_approval"
    assert approve(cli, mid)["status"] == "approved"  # 机关 is outside 党工委


def test_a_budget_that_cannot_be_checked_holds_naming_the_missing_price(org, monkeypatch):
    cli = org
    ok(cli, "group", "budget", "党工委", "--monthly", "100")
    monkeypatch.delenv("BROADCAST_PRICE_CONSOLE")
    mid = new(cli, "一支部")
    held = approve(cli, mid)
    assert held["status"] == "held"
    assert "the price of gateway console is not set (BROADCAST_PRICE_CONSOLE)" in held["reason"]
    assert "cost unknown" in ok(cli, "message", "show", str(mid)).stdout


def test_a_held_message_expires_when_too_late(org, monkeypatch):
    cli = org
    ok(cli, "group", "budget", "党工委", "--monthly", "0")
    mid = new(cli, "一支部")
    assert approve(cli, mid)["status"] == "held"
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T13:00")  # 3 h later; BROADCAST_MAX_LATENESS is 2h
    ok(cli, "run")
    shown = show(cli, mid)
    assert shown["status"] == "expired" and shown["status_reason"].startswith("still held over budget")


@pytest.mark.parametrize(("value", "needle"), [("-5", "cannot be negative"), ("abc", "not an amount in yuan"),
                                               ("1.234", "at most 2 decimals"), ("", "not an amount in yuan")])
def test_a_bad_budget_is_one_line_and_changes_nothing(org, value, needle):
    cli = org
    error_line(cli("group", "budget", "党工委", "--monthly", value), needle)
    assert ok(cli, "group", "budget", "--json").json() == []
    assert not [a for a, *_ in actions(cli) if a.startswith("budget.")]


def test_budget_input_errors(org):
    cli = org
    error_line(cli("group", "budget", "不存在", "--monthly", "300"), "no group named '不存在'")
    error_line(cli("group", "budget", "不存在"), "no group named")
    assert cli("group", "budget", "--monthly", "300").exit_code == 2  # which group?
    assert cli("group", "budget", "党工委", "--monthly", "3", "--remove").exit_code == 2
    assert cli("group", "budget", "党工委", "--month", "2026/12").exit_code == 2
    ok(cli, "group", "budget", "党工委", "--monthly", "¥1,200.50")
    assert ok(cli, "group", "budget", "--json").json()[0]["monthly"] == "1200.50"


@pytest.mark.parametrize("price", ["abc", "-0.05", "0.0000001", "0.05元"])
def test_a_bad_price_is_one_line(org, monkeypatch, price):
    cli = org
    monkeypatch.setenv("BROADCAST_PRICE_CONSOLE", price)
    for args in (("group", "budget"), ("report",), ("message", "list")):
        error_line(cli(*args), "invalid setting BROADCAST_PRICE_CONSOLE", repr(price))


def test_a_bad_billing_rule_is_one_line(org, monkeypatch):
    monkeypatch.setenv("BROADCAST_BILLING_CMPP", "sometimes")
    error_line(org("report"), "invalid setting BROADCAST_BILLING_CMPP", "submitted or delivered")


def test_renaming_a_group_keeps_its_spend_in_its_budgets_and_removing_it_removes_its_budget(org):
    cli = org
    mid = new(cli, "一支部")
    approve(cli, mid)
    ok(cli, "run")
    ok(cli, "group", "budget", "一支部", "--monthly", "1")
    ok(cli, "group", "rename", "一支部", "城南社区党支部")
    ok(cli, "group", "rename", "城南社区党支部", "城南一支部")
    # the deliveries recorded the old name; the spend still counts for the group and its parent
    assert ok(cli, "group", "budget", "城南一支部", "--json").json()["spent"]["cost"] == "0.20"
    assert ok(cli, "group", "budget", "党工委", "--json").json()["spent"]["cost"] == "0.20"
    ok(cli, "group", "remove", "城南一支部", "--force")
    assert ok(cli, "group", "budget", "--json").json() == []


def test_a_budget_raise_releases_held_messages_in_send_order_while_they_fit(org):
    cli = org
    ok(cli, "group", "budget", "党工委", "--monthly", "0.10")
    first, second = new(cli, "一支部"), new(cli, "二支部")  # ¥0.20, ¥0.15: together ¥0.35
    assert approve(cli, first)["status"] == approve(cli, second)["status"] == "held"
    r = ok(cli, "group", "budget", "党工委", "--monthly", "0.30", "--json").json()
    assert r["released"] == [first]  # the second would take the month to ¥0.35
    assert "approved before it ≈ ¥0.20" in show(cli, second)["status_reason"]
    assert ok(cli, "group", "budget", "党工委", "--monthly", "0.35", "--json").json()["released"] == [second]

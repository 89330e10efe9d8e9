"""A month's plan: sending days from the working calendar, the audience now, billable SMS per day
(recounted here from each day's text), the price of the first gateway, budgets set against it;
through the real CLI, with bad input refused in one line."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from broadcast.config import load_settings
from broadcast.costs.plan import month_plan
from broadcast.errors import CalendarGapError
from broadcast.messages.segments import count_segments
from broadcast.workspace import Workspace
from tests.costs.test_budgets_cli import error_line, ok, org  # noqa: F401 (fixture)
from tests.helpers.calendar_2027 import write_json

pytestmark = pytest.mark.both_stores

SIGNED = "【城南新区】"


def ws_now(ws: Workspace) -> Workspace:
    return Workspace(load_settings(), ws.engine)


def test_december_2026_on_workdays_for_everyone(org, ws) -> None:  # noqa: F811
    plan = month_plan(ws_now(ws), date(2026, 12, 1), on="workdays", all_=True)
    assert len(plan.per_day) == 23 and plan.days.skipped[0].day == date(2026, 12, 5)  # 8 weekend days off
    assert plan.people == 9 and plan.sms == 23 * 9 and plan.cost == Decimal("0.05") * 23 * 9
    assert plan.headline() == "December 2026: 23 sending days, 9 members, 207 SMS, ≈ ¥10.35"
    assert "one single-part SMS per person per day" in plan.assumption()


def test_a_series_gives_each_day_its_line_and_its_parts(org, ws, tmp_path, monkeypatch) -> None:  # noqa: F811
    long = "各位同志：" + "学习贯彻全会精神，立足岗位作贡献。" * 6  # two parts once signed
    lines = ["今日一言：实干兴邦。", long] + [f"第{i}天：踏实做事。" for i in range(3, 40)]
    folder = tmp_path / "templates" / "series"
    folder.mkdir(parents=True)
    (folder / "十二月.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("BROADCAST_TEMPLATES_DIR", str(tmp_path / "templates"))
    plan = month_plan(ws_now(ws), date(2026, 12, 1), on="workdays", groups=["党工委"], series="十二月")
    assert plan.people == 7  # 一支部 and 二支部, not 机关
    days = [d for d, _ in plan.per_day]
    assert days == plan.days.sending and len(days) == 23  # 23 lines used; the other 16 wait for January
    expected = [count_segments(SIGNED + text).parts * 7 for text in lines[:23]]
    assert count_segments(SIGNED + long).parts == 2 and [n for _, n in plan.per_day] == expected
    assert plan.sms == sum(expected) and plan.cost == Decimal("0.05") * sum(expected)


def test_budgets_of_the_targets_are_set_against_the_plan(org, ws) -> None:  # noqa: F811
    ok(org, "group", "budget", "党工委", "--monthly", "5")
    ok(org, "group", "budget", "一支部", "--monthly", "100")
    plan = month_plan(ws_now(ws), date(2026, 12, 1), on="workdays", groups=["党工委"])
    by = {b.line.group: b for b in plan.budgets}
    assert set(by) == {"党工委"}  # the targets' budgets (一支部 is inside 党工委's)
    assert by["党工委"].planned_sms == 23 * 7 and by["党工委"].left == Decimal(5) - Decimal("0.05") * 23 * 7
    assert "OVER by" in by["党工委"].text()


def test_a_month_the_calendar_has_no_data_for_is_refused_and_a_file_adds_it(org, ws, tmp_path, monkeypatch) -> None:  # noqa: F811
    with pytest.raises(CalendarGapError, match="2027"):
        month_plan(ws_now(ws), date(2027, 2, 1), on="workdays", all_=True)
    monkeypatch.setenv("BROADCAST_CALENDAR_FILE", str(write_json(tmp_path / "2027.json")))
    plan = month_plan(ws_now(ws), date(2027, 2, 1), on="workdays", all_=True)
    assert not {d for d, _ in plan.per_day} & {date(2027, 2, d) for d in range(6, 15)}  # the (test) 春节
    assert any("春节" in s.reason for s in plan.days.skipped)


def test_the_cli_prints_the_office_line_and_json(org) -> None:  # noqa: F811
    r = ok(org, "plan", "--month", "2026-12", "--on", "workdays", "--all")
    assert r.stdout.splitlines()[0] == "December 2026: 23 sending days, 9 members, 207 SMS, ≈ ¥10.35"
    data: dict[str, Any] = json.loads(ok(org, "plan", "--month", "2026-12", "--on", "workdays", "--all", "--json").stdout)
    assert (data["sending_days"], data["members"], data["sms"], data["cost"]) == (23, 9, 207, "10.35")
    assert data["skipped"][0]["date"] == "2026-12-05"


@pytest.mark.parametrize(("args", "needle"), [
    (("--month", "2026-13", "--all"), "--month"),
    (("--month", "2026-12", "--on", "sometimes", "--all"), "sometimes"),
    (("--month", "2026-12", "--group", "没有这个支部"), "没有这个支部"),
    (("--month", "2027-03", "--on", "workdays", "--all"), "2027"),
])
def test_bad_input_is_one_line(org, args: tuple[str, ...], needle: str, tmp_path: Path) -> None:  # noqa: F811
    error_line(org("plan", *args), needle)

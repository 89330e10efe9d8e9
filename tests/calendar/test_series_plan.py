"""Which line goes out on which day: --on, --on-skip next|drop and pinned lines, over 2026 and 2027."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from broadcast.calendar import WorkCalendar
from broadcast.errors import CalendarGapError, InputError
from broadcast.messages.series_plan import parse_on_skip, plan_series
from broadcast.messages.templates import SeriesLine, load_series
from tests.helpers.calendar_2027 import write_json


def lines(n: int, *pins: tuple[date, str]) -> list[SeriesLine]:
    out = [SeriesLine(i + 1, f"第{i + 1}句") for i in range(n)]
    return out + [SeriesLine(n + 1 + i, text, day) for i, (day, text) in enumerate(pins)]


def placed(plan) -> list[tuple[date, int]]:
    return [(p.day, p.line.number) for p in plan.placed]


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar.load(None)


def test_next_moves_the_line_to_the_next_sending_day(cal):
    # 2026-02-10 (Tuesday) on: the working Saturday 14 February sends, 春节 15–23 does not, Saturday 28 sends
    plan = plan_series(cal, "workdays", "next", date(2026, 2, 10), lines(10))
    assert [d for d, _ in placed(plan)] == [date(2026, 2, d) for d in (10, 11, 12, 13, 14, 24, 25, 26, 27, 28)]
    assert [n for _, n in placed(plan)] == list(range(1, 11))  # no line lost, in order
    assert plan.dropped == [] and plan.end == date(2026, 2, 28) and plan.span == 19
    assert plan.days is not None and [s.reason for s in plan.days.skipped][:2] == ["2026-02-15 春节 (holiday)",
                                                                                   "2026-02-16 春节 (holiday)"]


def test_drop_keeps_each_line_to_its_calendar_day(cal):
    plan = plan_series(cal, "workdays", "drop", date(2026, 9, 30), lines(6))
    # 30 Sep sends line 1; 1–5 October (国庆节) drop lines 2–6
    assert placed(plan) == [(date(2026, 9, 30), 1)]
    assert [(d.line.number, d.reason) for d in plan.dropped] == [
        (2, "2026-10-01 国庆节 (holiday)"), (3, "2026-10-02 国庆节 (holiday)"), (4, "2026-10-03 国庆节 (holiday)"),
        (5, "2026-10-04 国庆节 (holiday)"), (6, "2026-10-05 国庆节 (holiday)")]
    assert parse_on_skip("DROP") == "drop"
    with pytest.raises(InputError, match="next or drop"):
        parse_on_skip("later")


def test_pinned_lines_go_out_on_their_date_and_the_others_flow_around_them(cal):
    plan = plan_series(cal, "workdays", "next", date(2026, 9, 28),
                       lines(4, (date(2026, 10, 1), "国庆快乐"), (date(2026, 9, 29), "明日放假")))
    # 28 Sep: line 1; 29 Sep: pinned line 6; 30 Sep: line 2; 1 Oct (a holiday): pinned line 5; 8, 9 Oct: lines 3, 4
    assert placed(plan) == [(date(2026, 9, 28), 1), (date(2026, 9, 29), 6), (date(2026, 9, 30), 2),
                            (date(2026, 10, 1), 5), (date(2026, 10, 8), 3), (date(2026, 10, 9), 4)]
    assert [p.pinned for p in plan.placed] == [False, True, False, True, False, False]
    # a pin beyond the other lines stretches the schedule to it
    far = plan_series(cal, "every-day", "next", date(2026, 12, 1), lines(2, (date(2026, 12, 24), "平安夜")))
    assert far.end == date(2026, 12, 24) and len(far.placed) == 3


def test_count_pins_before_start_and_every_line_dropped(cal):
    plan = plan_series(cal, "weekdays", "next", date(2026, 12, 4), lines(5), 2)
    assert placed(plan) == [(date(2026, 12, 4), 1), (date(2026, 12, 7), 2)]  # Friday, then Monday
    with pytest.raises(InputError, match="--days 6 but the series has only 5 lines"):
        plan_series(cal, "weekdays", "next", date(2026, 12, 4), lines(5), 6)
    with pytest.raises(InputError, match="line 3 is pinned to 2026-12-01, before the schedule's first day 2026-12-04"):
        plan_series(cal, "weekdays", "next", date(2026, 12, 4), lines(2, (date(2026, 12, 1), "x")))


def test_2027_is_refused_until_a_file_adds_it(cal, tmp_path):
    with pytest.raises(CalendarGapError, match="no data for 2027"):
        plan_series(cal, "workdays", "next", date(2026, 12, 28), lines(10))
    with pytest.raises(CalendarGapError):  # a pinned line in 2027 reaches 2027 too
        plan_series(cal, "workdays", "next", date(2026, 12, 1), lines(2, (date(2027, 1, 4), "新年第一个工作日")))
    assert len(plan_series(cal, "every-day", "next", date(2026, 12, 28), lines(10)).placed) == 10  # no data needed
    with_2027 = WorkCalendar.load(str(write_json(tmp_path / "2027.json")))
    plan = plan_series(with_2027, "workdays", "next", date(2027, 2, 1), lines(12))
    # 1–5 Feb, 春节 6–14 off, 15–19, Saturday 20 (a working day), then Monday 22
    assert [d.day for d in [p for p in plan.placed]] == [date(2027, 2, d) for d in (1, 2, 3, 4, 5, 15, 16, 17, 18, 19,
                                                                                     20, 22)]


def test_series_file_pins(tmp_path: Path):
    path = tmp_path / "早餐.txt"
    path.write_text("# 注释\n第一句\n2026-12-24: 平安夜\n2026-12-25：圣诞\n第二句 12:30 开会\n", encoding="utf-8")
    series = load_series(tmp_path, str(path))
    assert [(e.number, e.text, e.pinned) for e in series.entries] == [
        (2, "第一句", None), (3, "平安夜", date(2026, 12, 24)), (4, "圣诞", date(2026, 12, 25)), (5, "第二句 12:30 开会", None)]
    assert series.lines == ["第一句", "平安夜", "圣诞", "第二句 12:30 开会"]
    for text, words in (("2026-02-30: 坏日子\n", "line 1: '2026-02-30' is not a date"),
                        ("2026-12-24: 一\n2026-12-24: 二\n", "line 2: 2026-12-24 already has line 1 pinned to it"),
                        ("x\n2026-12-24:   \n", "line 2: the line pinned to 2026-12-24 has no text")):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=words):
            load_series(tmp_path, str(path))

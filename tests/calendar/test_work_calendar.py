"""The working calendar over 2026 (chinesecalendar's data: the State Council notice of 2025-11-04)
and 2027 (no published data in the package: refused, then added by an override file)."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest

from broadcast.calendar import RULES, WorkCalendar, parse_rule, sending_days
from broadcast.errors import CalendarGapError, InputError
from tests.helpers.calendar_2027 import holiday_cn_2027, write_csv, write_json

# The State Council's 2026 arrangement (notice of 2025-11-04)
WORKING_WEEKENDS_2026 = [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20),
                         date(2026, 10, 10)]
SPRING_2026 = [date(2026, 2, 15) + timedelta(days=i) for i in range(9)]  # 15–23 February
NATIONAL_2026 = [date(2026, 10, 1) + timedelta(days=i) for i in range(7)]  # 1–7 October


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar.load(None)


def test_2026_workdays_skip_the_holidays_and_send_on_the_adjusted_weekends(cal):
    year = sending_days(cal, "workdays", date(2026, 1, 1), date(2026, 12, 31))
    sending = set(year.sending)
    assert not sending & set(SPRING_2026) and not sending & set(NATIONAL_2026)
    assert sorted(w.day for w in year.working_weekends) == WORKING_WEEKENDS_2026
    assert set(WORKING_WEEKENDS_2026) <= sending
    skipped = {s.day: s for s in year.skipped}
    assert skipped[date(2026, 2, 17)].reason == "2026-02-17 春节 (holiday)" and skipped[date(2026, 2, 17)].kind == "holiday"
    assert skipped[date(2026, 10, 1)].reason == "2026-10-01 国庆节 (holiday)"
    assert skipped[date(2026, 12, 5)].reason == "2026-12-05 Saturday (weekend)"
    assert {s.name for s in year.skipped if s.kind == "holiday"} == {"元旦", "春节", "清明节", "劳动节", "端午节", "中秋节", "国庆节"}
    assert len(year.sending) + len(year.skipped) == 365
    # every day is one or the other: an ordinary weekday sends, an ordinary weekend does not
    assert date(2026, 12, 7) in sending and date(2026, 12, 6) not in sending
    assert cal.day(date(2026, 2, 14)).describe() == "2026-02-14 Saturday, a working day (春节)"
    assert cal.day(date(2026, 12, 7)).describe() == "2026-12-07 Monday"


def test_2026_december_for_a_month_plan(cal):
    dec = sending_days(cal, "workdays", date(2026, 12, 1), date(2026, 12, 31))
    assert len(dec.sending) == 23 and len(dec.skipped) == 8  # no holiday in December 2026
    assert dec.to_dict()["skipped"][0] == {"date": date(2026, 12, 5), "kind": "weekend", "name": None,
                                          "reason": "2026-12-05 Saturday (weekend)"}


def test_other_rules(cal):
    week = (date(2026, 9, 28), date(2026, 10, 11))  # 中秋/国庆 week and the Saturday 10 October worked
    holidays_off = sending_days(cal, "holidays-off", *week)
    assert set(holidays_off.sending) == set(days(*week)) - set(NATIONAL_2026)  # weekends send, holidays not
    weekdays = sending_days(cal, "weekdays", *week)
    assert date(2026, 10, 1) in weekdays.sending and date(2026, 10, 10) not in weekdays.sending  # plain Mon–Fri
    assert sending_days(cal, "every-day", *week).sending == days(*week)
    assert parse_rule(" Workdays ") == "workdays" and set(RULES) == {"every-day", "workdays", "weekdays", "holidays-off"}
    with pytest.raises(InputError, match="--on 'weekend'"):
        parse_rule("weekend")


def test_a_year_without_data_is_refused_naming_it(cal):
    assert not cal.knows(2027)
    with pytest.raises(CalendarGapError) as exc:
        sending_days(cal, "workdays", date(2026, 12, 28), date(2027, 1, 8))
    assert exc.value.year == 2027 and exc.value.exit_code == 1
    assert "no data for 2027" in exc.value.message and "2004–2026" in exc.value.message
    assert "BROADCAST_CALENDAR_FILE" in (exc.value.hint or "") and "year,2027" in (exc.value.hint or "")
    with pytest.raises(CalendarGapError):
        cal.day(date(2027, 2, 8))
    with pytest.raises(CalendarGapError):
        sending_days(cal, "holidays-off", date(2027, 1, 1), date(2027, 1, 1))
    # the rules that need no data still work in 2027, and never read the calendar
    assert len(sending_days(WorkCalendar.none(), "weekdays", date(2027, 2, 1), date(2027, 2, 14)).sending) == 10


@pytest.mark.parametrize("form", ["json", "csv", "gb18030"])
def test_an_override_file_adds_2027(tmp_path, form):
    path = (write_json(tmp_path / "2027.json") if form == "json"
            else write_csv(tmp_path / "2027.csv", "utf-8" if form == "csv" else "gb18030"))
    cal = WorkCalendar.load(str(path))
    assert cal.knows(2027) and cal.years()[-1] == 2027
    feb = sending_days(cal, "workdays", date(2027, 1, 25), date(2027, 2, 28))
    skipped = {s.day: s.reason for s in feb.skipped}
    assert skipped[date(2027, 2, 8)] == "2027-02-08 春节 (holiday)"
    assert not set(feb.sending) & set(days(date(2027, 2, 6), date(2027, 2, 14)))
    assert [w.day for w in feb.working_weekends] == [date(2027, 1, 30), date(2027, 2, 20)]
    autumn = sending_days(cal, "workdays", date(2027, 9, 20), date(2027, 10, 10))
    assert [w.describe() for w in autumn.working_weekends] == ["2027-09-26 Sunday, a working day (国庆节)",
                                                               "2027-10-09 Saturday, a working day (国庆节)"]
    assert not set(autumn.sending) & set(days(date(2027, 10, 1), date(2027, 10, 7)))
    # a day no source names is an ordinary day of a known year
    assert cal.day(date(2027, 3, 6)).describe() == "2027-03-06 Saturday (weekend)"
    assert cal.day(date(2027, 3, 8)).workday
    status = cal.status()
    assert status["years"][-1] == 2027 and status["files"][0]["years"] == [2027]  # type: ignore[index]


def test_the_override_wins_over_the_package_for_its_dates(tmp_path):
    local = tmp_path / "本地.csv"
    local.write_text("2026-12-24,区庆,off\n2026-02-14,本地调整,off\n", encoding="utf-8")  # a local arrangement
    cal = WorkCalendar.load(str(local))
    assert cal.day(date(2026, 12, 24)).describe() == "2026-12-24 区庆 (holiday)"
    assert not cal.day(date(2026, 2, 14)).workday  # the package's working Saturday, made a day off here
    assert cal.day(date(2026, 2, 28)).workday  # the dates it does not name: the package's
    assert not cal.knows(2027) and cal.years()[-1] == 2026


def test_a_dated_line_of_an_unknown_year_does_not_make_the_year_known(tmp_path):
    part = tmp_path / "part.csv"
    part.write_text("# 本地\n2027-02-08,春节,off\n", encoding="utf-8")
    cal = WorkCalendar.load(str(part))
    with pytest.raises(CalendarGapError) as exc:
        cal.day(date(2027, 2, 9))
    assert "part.csv, line 2 names a day of 2027" in (exc.value.hint or "") and "year,2027" in (exc.value.hint or "")
    assert cal.status()["partial_years"] == {2027: "part.csv, line 2"}


def test_a_december_day_in_the_next_years_file_applies(tmp_path):
    data = holiday_cn_2027()
    data["days"] = [{"name": "元旦", "date": "2026-12-31", "isOffDay": True}, *data["days"]]  # type: ignore[misc]
    path = tmp_path / "2027.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    cal = WorkCalendar.load(str(path))
    assert cal.day(date(2026, 12, 31)).describe() == "2026-12-31 元旦 (holiday)"


def test_a_folder_or_several_files(tmp_path):
    folder = tmp_path / "calendar"
    folder.mkdir()
    write_json(folder / "2027.json")
    (folder / "local.csv").write_text("2026-12-24,区庆,off\n", encoding="utf-8")
    (folder / "readme.md").write_text("not read", encoding="utf-8")
    cal = WorkCalendar.load(str(folder))
    assert cal.knows(2027) and cal.day(date(2026, 12, 24)).off is True
    assert [Path(str(f["file"])).name for f in cal.overrides.read] == ["2027.json", "local.csv"]
    both = WorkCalendar.load(os.pathsep.join([str(folder / "2027.json"), str(folder / "local.csv")]))
    assert both.knows(2027) and both.day(date(2026, 12, 24)).off is True


BAD = [
    ("2027.json", '{"year": 2027,\n "days": [\n  {"name": "春节", "date": "2027-02-08", "isOffDay": true},\n  '
                  '{"name": "春节", "date": "2027-02-30", "isOffDay": true}\n]}', "line 4", "'2027-02-30'"),
    ("2027.json", '{"year": 2027,\n "days": [\n  {"name": "春节", "date": "2027-02-08", "isOffDay": "yes"}\n]}',
     "line 3", "isOffDay 'yes'"),
    ("2027.json", '{"year": 2027,\n "days": [\n  {"name": "", "date": "2027-02-08", "isOffDay": true}\n]}',
     "line 3", "name ''"),
    ("2027.json", '{"year": 2027,\n "days": [\n  {"name": "春节", "date": "2027-02-08", "isOffDay": true},\n]}',
     "line 4", "not valid JSON"),
    ("2027.json", '{"year": "twenty", "days": []}', "line 1", "year 'twenty'"),
    ("2027.json", '[1, 2]', "line 1", "not a holiday-cn year file"),
    ("2027.csv", "year,2027\n2027-02-08,春节,off\n2027-02-20,春节,maybe\n", "line 3", "'maybe'"),
    ("2027.csv", "year,2027\n2027-02-08,春节\n", "line 2", "'2027-02-08,春节'"),
    ("2027.csv", "year,27\n", "line 1", "year '27'"),
    ("2027.csv", "2027/02/08,春节,off\n", "line 1", "'2027/02/08'"),
    ("2027.csv", "2027-02-08,春节,off\n2027-02-08,春节,work\n", "line 2", "2027-02-08 is a working day here but a day "
                                                                      "off in 2027.csv, line 1"),
]


@pytest.mark.parametrize(("name", "text", "line", "value"), BAD)
def test_a_bad_file_is_refused_with_its_line_and_value(tmp_path, name, text, line, value):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as exc:
        WorkCalendar.load(str(path))
    msg = exc.value.message
    assert msg.startswith(f"calendar file {path}, {line}: ") and value in msg and "\n" not in msg, msg


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="names .*nowhere.json, which does not exist"):
        WorkCalendar.load(str(tmp_path / "nowhere.json"))

"""Schedules on the working calendar, through the real CLI and the clock of BROADCAST_NOW: a
workdays series over 春节 and 国庆节 2026 (the State Council's arrangement in chinesecalendar), a
year without data refused, the office's file adding 2027 (a test arrangement), skips, pins, and
what `due` and `schedule show` say."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.calendar_2027 import write_json
from tests.helpers.files import write_csv

pytestmark = pytest.mark.both_stores

BOB = {"BROADCAST_OPERATOR": "bob"}


@pytest.fixture
def office(cli, tmp_path: Path, monkeypatch):
    tdir = tmp_path / "templates"
    (tdir / "series").mkdir(parents=True)
    (tdir / "series" / "早餐.txt").write_text(
        "# 精神早餐\n" + "".join(f"第{i}句 {{date}}{{weekday}}\n" for i in range(1, 21)), encoding="utf-8")
    for key, value in (("BROADCAST_TEMPLATES_DIR", str(tdir)), ("BROADCAST_SIMULATOR_LATENCY_MS", "0"),
                       ("BROADCAST_SIMULATOR_FAILURE_RATE", "0"), ("BROADCAST_SIMULATOR_UNDELIVERED_RATE", "0")):
        monkeypatch.setenv(key, value)
    assert cli("group", "add", "一支部").exit_code == 0
    assert cli("member", "add", "张三", "13800138001", "-g", "一支部").exit_code == 0
    return tdir


def ok(cli, *args, env=None):
    r = cli(*args, env=env)
    assert r.exit_code == 0, r
    return r


def daily(cli, now: str, *args: str, env: dict[str, str] | None = None) -> dict:
    return ok(cli, "schedule", "daily", "--series", "早餐", "--to", "一支部", "--time", "07:30", *args, "--json",
              env={"BROADCAST_NOW": now, **(env or {})}).json()


def due(cli, now: str, env: dict[str, str] | None = None) -> dict:
    return ok(cli, "due", "--json", env={"BROADCAST_NOW": now, **(env or {})}).json()


def test_workdays_over_the_2026_spring_festival(cli, office):
    data = daily(cli, "2026-02-09T08:00", "--on", "workdays", "--days", "10")
    dates = [m["date"] for m in data["messages"]]
    # Tuesday 10 February on; Saturday 14 is a working day; 春节 15–23 off; Saturday 28 a working day
    assert dates == ["2026-02-10", "2026-02-11", "2026-02-12", "2026-02-13", "2026-02-14", "2026-02-24", "2026-02-25",
                     "2026-02-26", "2026-02-27", "2026-02-28"]
    assert [m["line"] for m in data["messages"]] == list(range(2, 12))  # file lines 2–11 (1 is a comment): none lost
    assert (data["on"], data["on_skip"], data["start"], data["end"]) == ("workdays", "next", "2026-02-10", "2026-02-28")
    assert {"date": "2026-02-17", "kind": "holiday", "name": "春节", "reason": "2026-02-17 春节 (holiday)"} in data["skipped"]
    assert [w["date"] for w in data["working_weekends"]] == ["2026-02-14", "2026-02-28"]
    saturday = data["messages"][4]["id"]
    assert ok(cli, "message", "show", str(saturday), "--json").json()["body"] == "第5句 2月14日星期六"
    ok(cli, "schedule", "approve", str(data["id"]), env=BOB)

    d14 = due(cli, "2026-02-14T07:30")
    assert [d["id"] for d in d14["due"]] == [saturday]
    assert d14["calendar"] == [{"schedule_id": data["id"], "date": "2026-02-14", "code": "working_weekend",
                                "message": f"schedule {data['id']} (早餐, workdays): today is 2026-02-14 Saturday, a "
                                           f"working day (春节), so it sends (message {saturday})"}]
    d17 = due(cli, "2026-02-17T07:30")
    assert d17["due"] == [] and [n["code"] for n in d17["calendar"]] == ["skipped"]
    assert "sends nothing today: 2026-02-17 春节 (holiday); its next line: 2026-02-24 07:30" in d17["calendar"][0]["message"]
    human = ok(cli, "due", env={"BROADCAST_NOW": "2026-02-17T07:30"}).stdout
    assert "2026-02-17 春节 (holiday)" in human
    # the working Saturday really sends; the holiday sends nothing
    ok(cli, "run", env={"BROADCAST_NOW": "2026-02-14T07:31"})
    assert ok(cli, "message", "show", str(saturday), "--json").json()["status"] == "sent"
    ok(cli, "run", env={"BROADCAST_NOW": "2026-02-17T07:31"})
    statuses = {m["date"]: m["status"] for m in ok(cli, "schedule", "show", str(data["id"]), "--json").json()["messages"]}
    assert statuses["2026-02-24"] == "approved"


def test_workdays_over_national_day_2026_and_schedule_show(cli, office):
    data = daily(cli, "2026-09-14T08:00", "--on", "workdays")
    dates = [m["date"] for m in data["messages"]]
    assert len(dates) == 20 and dates[0] == "2026-09-15" and dates[-1] == "2026-10-16"
    assert "2026-09-20" in dates and "2026-10-10" in dates  # Sunday and Saturday worked
    assert not [d for d in dates if "2026-09-25" <= d <= "2026-09-27" or "2026-10-01" <= d <= "2026-10-07"]
    shown = ok(cli, "schedule", "show", str(data["id"]), "--json").json()
    assert (shown["on"], shown["start_date"], shown["end_date"], shown["days"]) == ("workdays", "2026-09-15",
                                                                                   "2026-10-16", 32)
    reasons = {s["date"]: s["reason"] for s in shown["skipped"]}
    assert reasons["2026-10-01"] == "2026-10-01 国庆节 (holiday)" and reasons["2026-09-26"] == "2026-09-26 中秋节 (holiday)"
    assert reasons["2026-09-19"] == "2026-09-19 Saturday (weekend)"
    assert [w["date"] for w in shown["working_weekends"]] == ["2026-09-20", "2026-10-10"]
    assert shown["calendar_warnings"] == [] and shown["calendar_error"] is None
    human = ok(cli, "schedule", "show", str(data["id"])).stdout
    assert "on workdays" in human and "国庆节 (holiday)" in human
    assert "Working weekends: 2026-09-20 Sunday, a working day (国庆节), 2026-10-10 Saturday, a working day" in human
    listed = ok(cli, "schedule", "list", "--json").json()[0]
    assert (listed["on"], listed["end_date"]) == ("workdays", "2026-10-16")


def test_a_year_without_data_is_refused_and_nothing_is_written(cli, office):
    r = cli("schedule", "daily", "--series", "早餐", "--to", "一支部", "--time", "07:30", "--on", "workdays",
            env={"BROADCAST_NOW": "2026-12-21T08:00"})
    assert r.exit_code == 1
    assert "the working calendar has no data for 2027" in r.stderr and "BROADCAST_CALENDAR_FILE" in r.stderr
    assert "Traceback" not in r.stderr
    assert ok(cli, "schedule", "list", "--json").json() == [] and ok(cli, "message", "list", "--json").json() == []
    assert cli("schedule", "daily", "--series", "早餐", "--all", "--time", "07:30", "--on", "holidays-off",
               env={"BROADCAST_NOW": "2026-12-21T08:00"}).exit_code == 1
    # every-day and weekdays need no calendar: they run into 2027
    assert daily(cli, "2026-12-21T08:00", "--on", "weekdays")["end"] == "2027-01-18"  # 20 weekdays from 22 Dec
    r = cli("calendar", "days", "--from", "2027-01-01", "--to", "2027-01-31", "--on", "workdays")
    assert r.exit_code == 1 and "no data for 2027" in r.stderr


def test_the_override_file_adds_2027(cli, office, tmp_path, monkeypatch):
    monkeypatch.setenv("BROADCAST_CALENDAR_FILE", str(write_json(tmp_path / "2027.json")))
    data = daily(cli, "2027-02-01T06:00", "--on", "workdays", "--days", "12")
    assert [m["date"] for m in data["messages"]] == [f"2027-02-{d:02d}" for d in (1, 2, 3, 4, 5, 15, 16, 17, 18, 19, 20,
                                                                                   22)]
    assert [w["reason"] for w in data["working_weekends"]] == ["2027-02-20 Saturday, a working day (春节)"]
    d8 = due(cli, "2027-02-08T07:30")
    assert "2027-02-08 春节 (holiday)" in d8["calendar"][0]["message"]
    assert "Calendar: schedule 1 (早餐, workdays) sends nothing today: 2027-02-08 春节 (holiday)" in \
        ok(cli, "due", env={"BROADCAST_NOW": "2027-02-08T07:30"}).stdout
    days = ok(cli, "calendar", "days", "--from", "2027-09-20", "--to", "2027-10-10", "--json").json()
    assert [w["date"] for w in days["working_weekends"]] == ["2027-09-26", "2027-10-09"]
    assert "2027-10-01" not in days["sending"] and "2027-10-08" in days["sending"]
    check = ok(cli, "calendar", "check", "--json").json()
    assert check["years"][-1] == 2027 and check["files"][0]["years"] == [2027]
    assert "Known years: 2004–2027" in ok(cli, "calendar", "check").stdout
    # the file taken away later: the schedule stays as made; show and due say the calendar cannot tell
    monkeypatch.delenv("BROADCAST_CALENDAR_FILE")
    shown = ok(cli, "schedule", "show", str(data["id"]), "--json").json()
    assert "no data for 2027" in shown["calendar_error"] and len(shown["messages"]) == 12
    assert [n["code"] for n in due(cli, "2027-02-08T07:30")["calendar"]] == ["no_data"]


def test_drop_and_pinned_lines(cli, office):
    (office / "series" / "国庆.txt").write_text(
        "节前第一句\n节前第二句\n2026-10-01: 热烈庆祝中华人民共和国成立77周年！\n节后第一句\n", encoding="utf-8")
    r = ok(cli, "schedule", "daily", "--series", "国庆", "--all", "--time", "08:00", "--on", "workdays", "--on-skip",
           "drop", "--start", "2026-09-29", "--json", env={"BROADCAST_NOW": "2026-09-28T10:00"}).json()
    # 29 Sep: line 1, 30 Sep: line 2; 1 Oct: the pinned line, on a holiday; 2 Oct (a holiday) drops line 4
    assert [(m["date"], m["line"], m["pinned"]) for m in r["messages"]] == [
        ("2026-09-29", 1, False), ("2026-09-30", 2, False), ("2026-10-01", 3, True)]
    assert r["dropped"] == [{"line": 4, "date": "2026-10-02", "reason": "2026-10-02 国庆节 (holiday)", "text": "节后第一句"}]
    shown = ok(cli, "schedule", "show", str(r["id"]))
    assert "3 pinned" in shown.stdout
    assert not [s for s in ok(cli, "schedule", "show", str(r["id"]), "--json").json()["skipped"]
                if s["date"] == "2026-10-01"]  # the pinned day sends
    note = due(cli, "2026-10-01T08:00")["calendar"][0]
    assert note["code"] == "pinned" and "line 3 is pinned to it" in note["message"]
    for args, words in ((["--on", "weekend"], "--on 'weekend' is not one of"),
                        (["--on-skip", "later"], "--on-skip 'later' is not next or drop")):
        bad = cli("schedule", "daily", "--series", "国庆", "--all", "--time", "08:00", *args,
                  env={"BROADCAST_NOW": "2026-09-28T10:00"})
        assert bad.exit_code == 1 and words in bad.stderr, bad


def test_a_bad_calendar_file_is_one_line_and_exit_1(cli, office, tmp_path, monkeypatch):
    bad = tmp_path / "2027.csv"
    bad.write_text("year,2027\n2027-02-06,春节,off\n2027-02-30,春节,work\n", encoding="utf-8")
    monkeypatch.setenv("BROADCAST_CALENDAR_FILE", str(bad))
    r = cli("schedule", "daily", "--series", "早餐", "--all", "--time", "07:30", "--on", "workdays",
            env={"BROADCAST_NOW": "2026-12-01T08:00"})
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first == f"Error: calendar file {bad}, line 3: date '2027-02-30' is not a date (write YYYY-MM-DD, e.g. 2027-02-06)"
    assert ok(cli, "schedule", "list", "--json").json() == []
    c = cli("calendar", "check")
    assert c.exit_code == 1 and "line 3" in c.stderr
    # a schedule that needs no calendar does not read the file
    assert daily(cli, "2026-12-01T08:00", "--days", "2")["on"] == "every-day"


def test_a_calendar_changed_after_the_schedule_is_reported_not_acted_on(cli, office, tmp_path, monkeypatch):
    data = daily(cli, "2026-12-21T08:00", "--on", "workdays", "--days", "4")
    assert [m["date"] for m in data["messages"]] == ["2026-12-22", "2026-12-23", "2026-12-24", "2026-12-25"]
    local = tmp_path / "local.csv"
    local.write_text("2026-12-24,区庆,off\n", encoding="utf-8")
    monkeypatch.setenv("BROADCAST_CALENDAR_FILE", str(local))
    mid = data["messages"][2]["id"]
    (warning,) = ok(cli, "schedule", "show", str(data["id"]), "--json").json()["calendar_warnings"]
    assert warning["message_id"] == mid and "2026-12-24 区庆 (holiday)" in warning["message"]
    r = ok(cli, "due", env={"BROADCAST_NOW": "2026-12-24T07:30"})
    assert f"broadcast message cancel {mid}" in r.stderr
    assert ok(cli, "message", "show", str(mid), "--json").json()["status"] == "pending_approval"  # left to a person


def test_a_branch_line_is_accepted_into_a_sending_day(cli, office, tmp_path, monkeypatch):
    monkeypatch.setenv("BROADCAST_NOW", "2026-09-28T10:00")
    sch = daily(cli, "2026-09-28T10:00", "--on", "workdays", "--days", "3")
    assert [m["date"] for m in sch["messages"]] == ["2026-09-29", "2026-09-30", "2026-10-08"]
    path = write_csv(tmp_path / "s.csv", [["一支部", "支部来稿一", ""], ["一支部", "支部来稿二", "2026-10-02"]],
                     headers=["支部", "内容", "日期"])
    ok(cli, "submission", "import", path)
    first = ok(cli, "submission", "accept", "1", "--json").json()
    assert first["day"] == "2026-10-09"  # the next sending day without a line: not 1–7 October (国庆节)
    r = cli("submission", "accept", "2")  # the branch asked for a holiday
    assert r.exit_code == 1
    assert "schedule 1 sends on workdays, and 2026-10-02 国庆节 (holiday) is not one of its days" in r.stderr
    second = ok(cli, "submission", "accept", "2", "--day", "2026-10-10", "--json").json()  # a working Saturday
    assert second["day"] == "2026-10-10"

"""Branch submissions through the CLI: submitters, accept into a series day (new day, replaced
text, refused when approved), reject, the report, and the approval gate before `broadcast run`."""

from __future__ import annotations

import pytest

from tests.helpers.files import write_csv
from tests.twoway.submission_setup import BOB, actions, office_fixture, ok, sms_submission  # noqa: F401

pytestmark = [pytest.mark.usefixtures("office"), pytest.mark.both_stores]  # PostgreSQL runs: whole suite


def show(cli, mid):
    return ok(cli, "message", "show", str(mid), "--json").json()


def test_marking_a_submitter(cli):
    r = ok(cli, "group", "submitter", "二支部", "138 0013 8002", "--json").json()
    assert r == {"group": "二支部", "phone": "+8613800138002", "name": "李四", "submitter": True, "changed": True}
    assert "already a submitter" in ok(cli, "group", "submitter", "二支部", "13800138002").stdout
    members = ok(cli, "group", "show", "二支部", "--json").json()["member_list"]
    assert [m["submitter"] for m in members] == [True]
    assert "Submitter" in ok(cli, "group", "show", "二支部").stdout
    r = cli("group", "submitter", "一支部", "13800138002")  # 李四 is not in 一支部
    assert r.exit_code == 1 and "not a member of '一支部'" in r.stderr
    assert cli("group", "submitter", "九支部", "13800138002").exit_code == 1
    assert "now not a submitter" in ok(cli, "group", "submitter", "二支部", "13800138002", "--remove").stdout
    entries = [a for a in actions(cli) if a[0] == "group.submitter"]
    assert entries == [("group.submitter", "group:一支部", "tester"), ("group.submitter", "group:二支部", "tester"),
                       ("group.submitter", "group:二支部", "tester")]


def test_accept_into_a_pending_day_replaces_its_text_and_the_gate_holds_until_approval(cli, ws, office):
    sid = sms_submission(ws, "13800138001", "学习二十届四中全会精神")
    day1 = office["messages"][0]["id"]
    listed = ok(cli, "submission", "list", "--json").json()
    assert [(s["id"], s["group"], s["member"], s["source"]) for s in listed] == [(sid, "一支部", "张三", "sms")]

    r = ok(cli, "submission", "accept", str(sid), "--schedule", str(office["id"]), "--day", "2026-11-28")
    assert "Replaced the text of message" in r.stdout and "broadcast message approve" in r.stdout
    m = show(cli, day1)
    assert (m["body"], m["status"], m["author"], m["schedule_id"]) == ("学习二十届四中全会精神", "pending_approval",
                                                                       "tester", office["id"])
    # 07:30 on the day: not approved, so nothing goes out
    run = cli("run", "--json", env={"BROADCAST_NOW": "2026-11-28T07:30"})
    assert run.exit_code in (0, 3)
    assert show(cli, day1)["status"] == "pending_approval"
    assert cli("message", "approve", str(day1)).exit_code == 1  # the accepting operator wrote it: not them
    ok(cli, "message", "approve", str(day1), env=BOB)
    run = cli("run", "--json", env={"BROADCAST_NOW": "2026-11-28T07:31"})
    assert run.exit_code == 0, run
    sent = show(cli, day1)
    assert sent["status"] == "sent" and sent["deliveries"]
    sub = ok(cli, "submission", "list", "--json").json()[0]
    assert (sub["status"], sub["day"], sub["message_id"], sub["message_status"]) == ("accepted", "2026-11-28", day1,
                                                                                      "sent")
    rep = ok(cli, "submission", "report", "--json").json()
    assert rep["headline"] == "1 organisation, 1 line submitted, 1 used"
    log = actions(cli)
    for entry in (("submission.accept", f"submission:{sid}", "tester"), ("message.edit", f"message:{day1}", "tester"),
                  ("message.approve", f"message:{day1}", "bob")):
        assert entry in log


def test_accept_into_a_new_day_the_wanted_day_and_the_next_free_day(cli, tmp_path, office):
    path = write_csv(tmp_path / "s.csv", [["二支部", "第一条", "2026-12-03"], ["一支部", "第二条", ""],
                                          ["一支部", "第三条", ""]], headers=["支部", "内容", "日期"])
    ok(cli, "submission", "import", path)
    sch = str(office["id"])
    a = ok(cli, "submission", "accept", "1", "--schedule", sch, "--json").json()  # its wanted day: past the series' end
    assert (a["day"], a["message_status"], a["replaced"]) == ("2026-12-03", "pending_approval", None)
    m = show(cli, a["message_id"])
    assert m["targets"] == ["党工委"] and m["scheduled_at"] == "2026-12-02T23:30:00+00:00" and m["body"] == "第一条"
    assert ok(cli, "schedule", "show", sch, "--json").json()["days"] == 6  # the series grew to 12-03
    b = ok(cli, "submission", "accept", "2", "--json").json()  # the only series; its next day without a line
    assert b["day"] == "2026-12-02"
    ok(cli, "message", "cancel", str(office["messages"][1]["id"]))  # 11-29's line cancelled: a gap
    c = ok(cli, "submission", "accept", "3", "--schedule", sch, "--json").json()
    assert c["day"] == "2026-11-29" and c["replaced"] is None
    days = [(m["date"], m["status"]) for m in ok(cli, "schedule", "show", sch, "--json").json()["messages"]]
    assert ("2026-11-29", "pending_approval") in days and ("2026-11-29", "cancelled") in days
    # the series' lines, approved at once by a second operator, include the accepted ones
    approved = ok(cli, "schedule", "approve", sch, "--json", env=BOB).json()["approved"]
    assert {a["message_id"], b["message_id"], c["message_id"]} <= set(approved)


def test_refusals(cli, ws, office):
    sch = str(office["id"])
    s1 = sms_submission(ws, "13800138001", "第一条")
    s2 = sms_submission(ws, "13800138001", "第二条")
    ok(cli, "schedule", "approve", sch, env=BOB)
    r = cli("submission", "accept", str(s1), "--schedule", sch, "--day", "2026-11-28")
    assert r.exit_code == 1 and "approved" in r.stderr and "only a line not yet approved" in r.stderr
    assert show(cli, office["messages"][0]["id"])["body"] == "第一句"  # untouched
    for args, words in ((["--day", "2026-11-29"], "2026-11-29 at 07:30 is in the past"), (["--day", "someday"], "--day"),
                        (["--day", "2026-11-27"], "before schedule 1 starts")):
        r = cli("submission", "accept", str(s1), "--schedule", sch, *args, env={"BROADCAST_NOW": "2026-11-29T08:00"})
        assert r.exit_code == 1 and words in r.stderr, (args, r)
    assert "no schedule 9" in cli("submission", "accept", str(s1), "--schedule", "9").stderr
    assert "no submission 99" in cli("submission", "accept", "99", "--schedule", sch).stderr
    ok(cli, "submission", "accept", str(s1), "--schedule", sch)
    r = cli("submission", "accept", str(s1), "--schedule", sch)
    assert r.exit_code == 1 and "already accepted" in r.stderr
    assert cli("submission", "reject", str(s2), "--reason", " ").exit_code == 1
    r = ok(cli, "submission", "reject", str(s2), "--reason", "与上周重复", "--json").json()
    assert (r["status"], r["reason"], r["decided_by"]) == ("rejected", "与上周重复", "tester")
    assert "already rejected (与上周重复)" in cli("submission", "accept", str(s2), "--schedule", sch).stderr
    assert ("submission.reject", f"submission:{s2}", "tester") in actions(cli)
    assert [s["id"] for s in ok(cli, "submission", "list", "--status", "rejected", "--json").json()] == [s2]
    assert cli("submission", "list", "--status", "maybe").exit_code == 1
    ok(cli, "schedule", "cancel", sch)
    s3 = sms_submission(ws, "13800138001", "第三条")
    assert "cancelled" in cli("submission", "accept", str(s3), "--schedule", sch).stderr
    assert "name the series with --schedule ID: there is none" in cli("submission", "accept", str(s3)).stderr


def test_a_later_accept_on_the_same_day_puts_the_earlier_back(cli, ws, office):
    sch = str(office["id"])
    s1 = sms_submission(ws, "13800138001", "甲")
    s2 = sms_submission(ws, "13800138001", "乙")
    first = ok(cli, "submission", "accept", str(s1), "--schedule", sch, "--day", "2026-12-05", "--json").json()
    r = ok(cli, "submission", "accept", str(s2), "--schedule", sch, "--day", "2026-12-05")
    assert f"submission {s1} is pending again" in r.stdout
    assert show(cli, first["message_id"])["body"] == "乙"
    back = ok(cli, "submission", "list", "--json").json()[0]
    assert (back["status"], back["message_id"], back["reason"]) == ("pending", None, f"replaced by submission {s2}")


def test_braces_and_markup_in_a_line_stay_text(cli, ws, office):
    sid = sms_submission(ws, "13800138001", "{name}同志[bold]你好[/]")
    a = ok(cli, "submission", "accept", str(sid), "--schedule", str(office["id"]), "--json").json()
    m = show(cli, a["message_id"])
    assert m["preview"].endswith("{name}同志[bold]你好[/]")  # not filled in with the recipient's name
    assert "[bold]" in ok(cli, "submission", "list").stdout  # shown as typed, not as markup


def test_report_per_branch_with_xlsx_and_formula_text_inert(cli, ws, office, tmp_path):
    from openpyxl import load_workbook

    ok(cli, "group", "add", "=HYPERLINK(\"http://x\")", "--parent", "党工委")
    path = write_csv(tmp_path / "s.csv", [["二支部", "一"], ["二支部", "二"], ["=HYPERLINK(\"http://x\")", "三"]],
                     headers=["支部", "内容"])
    ok(cli, "submission", "import", path)
    sms_submission(ws, "13800138001", "四")
    ok(cli, "submission", "accept", "1", "--schedule", str(office["id"]))
    ok(cli, "submission", "reject", "2", "--reason", "重复")
    out = tmp_path / "report.xlsx"
    r = ok(cli, "submission", "report", "--xlsx", out)
    assert "3 organisations, 4 lines submitted, 0 used" in r.stdout and "Wrote" in r.stdout
    rep = ok(cli, "submission", "report", "--json").json()
    by = {b["branch"]: (b["submitters"], b["submitted"], b["accepted"], b["rejected"], b["pending"], b["used"])
          for b in rep["branches"]}
    assert by == {"二支部": (0, 2, 1, 1, 0, 0), "一支部": (1, 1, 0, 0, 1, 0), '=HYPERLINK("http://x")': (0, 1, 0, 0, 1, 0)}
    sheet = load_workbook(out).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0] == ["支部", "投稿人", "投稿", "采用", "未采用", "待审", "已发送"]
    assert rows[-1] == ["合计", 1, 4, 1, 1, 2, 0]
    formula = next(row for row in sheet.iter_rows() if "HYPERLINK" in str(row[0].value))[0]
    assert formula.value == "'=HYPERLINK(\"http://x\")" and formula.data_type == "s"
    assert ok(cli, "submission", "report", "--from", "2026-11-28", "--json").json()["totals"]["submitted"] == 0

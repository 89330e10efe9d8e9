"""Submissions from spreadsheets: a GB18030 CSV with Chinese headers, an .xlsx with a bad row
(the whole file refused, every bad row named, nothing written), re-imports add nothing."""

from __future__ import annotations

import pytest

from tests.helpers.files import write_csv, write_xlsx
from tests.twoway.submission_setup import actions, office_fixture, ok  # noqa: F401  (the office fixture)

pytestmark = [pytest.mark.usefixtures("office"), pytest.mark.both_stores]  # PostgreSQL runs: whole suite


def listed(cli, *args):
    return ok(cli, "submission", "list", "--json", *args).json()


def test_gb18030_csv_with_chinese_headers_and_a_title_row(cli, tmp_path):
    rows = [["一支部", "学习贯彻全会精神，争做新时代合格党员", "2026-12-01"],
            ["二支部", "不忘初心，牢记使命", ""],
            ["", "", ""],  # a blank line is not a row
            ["二支部", "  以{人民}为中心  ", "2026年12月3日"]]
    path = write_csv(tmp_path / "投稿.csv", rows, encoding="gb18030", headers=["支部", "内容", "日期"],
                     title="十二月精神早餐投稿汇总")
    assert path.read_bytes().decode("gb18030") and not _is_utf8(path.read_bytes())
    r = ok(cli, "submission", "import", path, "--json").json()
    assert (r["rows"], r["added"], r["already"], r["imported"], r["errors"]) == (3, 3, 0, True, [])
    subs = listed(cli)
    assert [(s["group"], s["text"], s["wanted_day"], s["status"], s["source"]) for s in subs] == [
        ("一支部", "学习贯彻全会精神，争做新时代合格党员", "2026-12-01", "pending", "import"),
        ("二支部", "不忘初心，牢记使命", None, "pending", "import"),
        ("二支部", "以{人民}为中心", "2026-12-03", "pending", "import"),
    ]
    assert listed(cli, "--group", "二支部", "--status", "pending") == subs[1:]
    # the same file again: nothing added, said so
    again = ok(cli, "submission", "import", path)
    assert "Imported 0 submissions" in again.stdout and "3 already imported" in again.stdout
    assert len(listed(cli)) == 3
    assert [a for a in actions(cli) if a[0] == "submission.import"] == [("submission.import", "file:投稿.csv", "tester")] * 2


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_xlsx_with_a_bad_row_is_refused_whole(cli, tmp_path):
    rows = [["一支部", "第一条", None], ["七支部", "第二条", None], ["二支部", "第三条", "2026-12-02"]]
    path = write_xlsx(tmp_path / "投稿.xlsx", rows, headers=["支部", "内容", "日期"], sheet="投稿")
    before = len(actions(cli))
    r = cli("submission", "import", path)
    assert r.exit_code == 1, r
    assert "row 3" in r.stderr and "支部" in r.stderr and "七支部" in r.stderr and "nothing imported" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert listed(cli) == [] and len(actions(cli)) == before  # nothing written, nothing recorded
    data = cli("submission", "import", path, "--json")
    assert data.exit_code == 1
    assert data.json()["errors"] == [{"row": 3, "field": "支部", "value": "七支部",
                                      "reason": "no such branch (see 'broadcast group list')"}]
    assert data.json()["imported"] is False


def test_every_bad_row_is_named_with_its_column_and_value(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BROADCAST_BANNED_WORDS", "赌博")
    rows = [["一支部", "好的一条", None],
            ["一支部", "", None],
            ["", "没有支部", None],
            ["二支部", "日期不对", "明天"],
            ["二支部", "日期已过", "2026-11-01"],
            ["二支部", "2月30日", "2026-02-30"],
            ["一支部", "详见 http://example.com/x", None],
            ["一支部", "远离赌博", None],
            ["一支部", "很长" * 300, None]]
    path = write_xlsx(tmp_path / "bad.xlsx", rows, headers=["Branch", "Text", "Date"])
    r = cli("submission", "import", path, "--json")
    assert r.exit_code == 1
    got = [(e["row"], e["field"], e["value"][:10]) for e in r.json()["errors"]]
    assert got == [(3, "Text", ""), (4, "Branch", ""), (5, "Date", "明天"), (6, "Date", "2026-11-01"),
                   (7, "Date", "2026-02-30"), (8, "Text", "详见 http://"), (9, "Text", "远离赌博"), (10, "Text", "很长很长很长很长很长")]
    reasons = [e["reason"] for e in r.json()["errors"]]
    assert "link" in reasons[5] and "banned word" in reasons[6] and "past" in reasons[3] and "no such day" in reasons[4]
    assert listed(cli) == []


def test_dry_run_and_unreadable_files(cli, tmp_path):
    path = write_csv(tmp_path / "s.csv", [["一支部", "一条", ""]], headers=["支部", "内容", "日期"], encoding="utf-8-sig")
    r = ok(cli, "submission", "import", path, "--dry-run")
    assert "Dry run" in r.stdout and listed(cli) == []
    no_text = write_csv(tmp_path / "n.csv", [["一支部", "x"]], headers=["支部", "备注"])
    r = cli("submission", "import", no_text)
    assert r.exit_code == 1 and "no 内容 column" in r.stderr
    r = cli("submission", "import", tmp_path / "missing.csv")
    assert r.exit_code == 1 and "file not found" in r.stderr


def test_same_row_twice_in_a_file_is_one_submission(cli, tmp_path):
    path = write_csv(tmp_path / "d.tsv", [["一支部", "同一条"], ["一支部", "同一条"]], headers=["支部", "内容"],
                     delimiter="\t", encoding="utf-16")
    r = ok(cli, "submission", "import", path, "--json").json()
    assert (r["added"], r["duplicates"]) == (1, 1)

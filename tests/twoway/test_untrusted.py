"""Untrusted text: a member's reply reaches the terminal with controls and bidi characters as
visible escapes, bounded, never as rich markup or a template; it reaches CSV and XLSX files inert
(``=HYPERLINK(...)`` gets a leading ``'``, and .xlsx cells are text, never formulas)."""

from __future__ import annotations

import pytest

from broadcast.twoway.untrusted import DISPLAY_LIMIT, for_terminal, one_line, spreadsheet_safe
from tests.helpers.files import read_csv
from tests.twoway.test_inbox import NOW, PEOPLE, add_feedback, make_org

EVIL = '=HYPERLINK("http://x","y")'
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.mark.parametrize(("text", "shown"), [
    ("村口路灯坏了", "村口路灯坏了"),
    ("a\x1b[31mred\x1b[0m", "a\\x1b[31mred\\x1b[0m"),
    ("line\nnext\r\tend", "line\\nnext\\r\\tend"),
    ("\x00\x07\x7f\x85\x9b", "\\x00\\x07\\x7f\\x85\\x9b"),
    ("abc\u202edcba", "abc\\u202edcba"),
    (BIDI, "\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c"),
    ("zero\u200bwidth\ufeff\u2060\u00ad", "zero\\u200bwidth\\ufeff\\u2060\\xad"),
    ("sep\u2028par\u2029", "sep\\u2028par\\u2029"),
    ("\U000e0041tag", "\\U000e0041tag"),
    ("emoji 👍 和 {name}", "emoji 👍 和 {name}"),
    ("", ""),
])
def test_for_terminal(text, shown):
    assert for_terminal(text) == shown


def test_for_terminal_is_bounded():
    text = "长" * (DISPLAY_LIMIT + 3000)
    assert for_terminal(text) == "长" * DISPLAY_LIMIT + "…(+3000 characters)"
    assert for_terminal("abcdef", limit=3) == "abc…(+3 characters)"
    assert for_terminal("abc", limit=None) == "abc"
    assert one_line("一二三四五六", 4) == "一二三…" and one_line("a\nb", 10) == "a\\nb"


def test_spreadsheet_safe_is_the_projects():
    assert spreadsheet_safe(EVIL) == "'" + EVIL
    assert spreadsheet_safe("+8613800138001") == "+8613800138001"


@pytest.fixture
def org(isolated_env, monkeypatch, request):
    monkeypatch.setenv("BROADCAST_NOW", NOW)
    monkeypatch.setenv("COLUMNS", "250")
    ws = request.getfixturevalue("ws")
    make_org(ws)
    return ws


NASTY = "请看\u202egnp.exe\x1b]0;pwned\x07\x1b[2J[bold red]假的[/] {name}\n第二行"


def test_show_and_list_neutralise_controls_and_markup(org, cli):
    item = add_feedback(org, PEOPLE["张三"], NASTY)
    assert cli("inbox", "triage", item, "--as", "study", "--note", "备注\u202e反转").exit_code == 0
    for args in (("show", item), ("list",), ("report",)):
        out = cli("inbox", *args)
        assert out.exit_code == 0, out
        for raw in ("\u202e", "\x1b", "\x07"):
            assert raw not in out.stdout, (args, raw)
    shown = cli("inbox", "show", item).stdout
    assert "请看\\u202egnp.exe\\x1b]0;pwned\\x07\\x1b[2J[bold red]假的[/] {name}\\n第二行" in shown
    assert "Note: 备注\\u202e反转" in shown
    assert "\\u202e" in cli("inbox", "list").stdout
    assert cli("inbox", "show", item, "--json").json()["item"]["text"] == NASTY  # JSON keeps it exactly


def test_formula_injection_is_inert_in_csv_and_xlsx(org, cli, tmp_path):
    from openpyxl import load_workbook

    item = add_feedback(org, PEOPLE["张三"], EVIL)
    add_feedback(org, PEOPLE["李四"], "@SUM(1+1)")
    assert cli("inbox", "triage", item, "--as", "supervise", "--note", "-2+3", "--due", "2026-11-20").exit_code == 0

    csv_file = tmp_path / "inbox.csv"
    r = cli("inbox", "list", "--csv", csv_file)
    assert r.exit_code == 0 and "Wrote 2 inbox items" in r.stdout
    rows = read_csv(csv_file, "utf-8-sig")
    header = rows[0]
    got = [dict(zip(header, row)) for row in rows[1:]]
    assert [(g["text"], g["note"], g["phone"]) for g in got] == \
        [("'" + EVIL, "'-2+3", "138****8001"), ("'@SUM(1+1)", "", "138****8002")]

    def cells(path, sheet) -> list[dict[str, object]]:
        wb = load_workbook(path)
        try:
            for row in wb[sheet].iter_rows():
                for cell in row:
                    assert cell.data_type != "f", f"{sheet}!{cell.coordinate} is a formula: {cell.value!r}"
            values = [[c.value for c in row] for row in wb[sheet].iter_rows()]
        finally:
            wb.close()
        return [dict(zip(values[0], v)) for v in values[1:]]

    xlsx_list = tmp_path / "inbox.xlsx"
    assert cli("inbox", "list", "--xlsx", xlsx_list).exit_code == 0
    assert [c["text"] for c in cells(xlsx_list, "inbox")] == ["'" + EVIL, "'@SUM(1+1)"]

    report = tmp_path / "report.xlsx"
    assert cli("inbox", "report", "--xlsx", report).exit_code == 0
    assert [c["text"] for c in cells(report, "items")] == ["'" + EVIL, "'@SUM(1+1)"]
    assert cells(report, "overdue") == []
    assert cli("inbox", "report", "--xlsx", report, env={"BROADCAST_NOW": "2026-11-22T09:00"}).exit_code == 0
    assert [(c["text"], c["note"]) for c in cells(report, "overdue")] == [("'" + EVIL, "'-2+3")]

    actions = [e["action"] for e in cli("audit", "log", "--action", "inbox", "--json").json()]
    assert actions == ["inbox.triage", "inbox.export", "inbox.export", "inbox.report_export", "inbox.report_export"]
    assert cli("inbox", "list", "--csv", tmp_path / "a.csv", "--xlsx", tmp_path / "b.xlsx").exit_code == 2
    assert cli("inbox", "list", "--csv", tmp_path / "missing" / "a.csv").exit_code == 1

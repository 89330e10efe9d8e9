"""The contact-list import, fed real files (GB18030, UTF-16, UTF-8 with BOM, .xlsx)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from broadcast.errors import ImportFileError, InputError, NotFoundError
from broadcast.recipients.groups import add_group
from broadcast.recipients.importer import ImportOptions, import_members
from broadcast.recipients.members import add_member, list_members, show_member
from broadcast.recipients.optouts import add_optout
from tests.helpers.files import read_csv, write_csv, write_xlsx

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL

ROWS = [
    [1, "张三", "138 0514 1234", "城南社区党支部", "书记", ""],
    [2, "李四", "+86-139-0514-1234", "城南社区党支部", "党员", "流动党员"],
    [3, "王五", "１３７０５１４１２３４", "青石村党支部", "党员", ""],
]


@pytest.fixture
def groups(ws):
    add_group(ws, "城南新区党工委")
    add_group(ws, "城南社区党支部", "城南新区党工委")
    add_group(ws, "青石村党支部", "城南新区党工委")
    return ws


def counts(summary):
    return {k: getattr(summary, k) for k in ("added", "updated", "unchanged", "rejected", "duplicates", "conflicts")}


def table_counts(ws):
    with ws.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("members", "memberships", "groups", "optouts")}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16"])
def test_encodings_are_detected(groups, tmp_path, encoding):
    delimiter = "\t" if encoding == "utf-16" else ","
    f = write_csv(tmp_path / "list.csv", ROWS, encoding=encoding, delimiter=delimiter)
    s = import_members(groups, f)
    assert counts(s) == dict(added=3, updated=0, unchanged=0, rejected=0, duplicates=0, conflicts=0)
    assert [m.name for m in list_members(groups)] == sorted(["张三", "李四", "王五"])
    assert show_member(groups, "13805141234").groups == ["城南社区党支部"]


def test_given_encoding_overrides_detection_and_wrong_one_is_a_clear_error(groups, tmp_path):
    f = write_csv(tmp_path / "list.csv", ROWS, encoding="gb18030")
    with pytest.raises(ImportFileError, match="cannot be read as utf-8"):
        import_members(groups, f, ImportOptions(encoding="utf-8"))
    assert table_counts(groups)["members"] == 0
    assert import_members(groups, f, ImportOptions(encoding="GBK")).added == 3


def test_xlsx_with_title_row_number_cells_and_sheet(groups, tmp_path):
    rows = [[1, "张三", 13805141234, "城南社区党支部"], [2, "李四", 13905141234.0, "青石村党支部"],
            [3, "赵六", "1.38051E+10", "青石村党支部"]]
    f = write_xlsx(tmp_path / "list.xlsx", rows, headers=["序号", "姓名", "手机号码", "所属支部"],
                   title="城南新区党员通讯录", sheet="名单", extra_sheet="说明")
    s = import_members(groups, f, ImportOptions(sheet="名单"))
    assert (s.added, s.rejected) == (2, 1)
    assert s.errors[0].row == 5 and s.errors[0].value == "1.38051E+10" and "scientific" in s.errors[0].reason
    with pytest.raises(ImportFileError, match="no sheet named 'nope'; sheets: 名单, 说明"):
        import_members(groups, f, ImportOptions(sheet="nope"))


def test_english_headers_and_spacing_are_recognised(groups, tmp_path):
    f = write_csv(tmp_path / "l.txt", [["Zhang San", "13805141234", "城南社区党支部", "secretary"]],
                  headers=[" Name ", "Mobile Phone", "GROUP", "Title"], encoding="utf-16", delimiter="\t")
    s = import_members(groups, f)
    assert s.added == 1
    m = show_member(groups, "+8613805141234")
    assert (m.name, m.title) == ("Zhang San", "secretary")


def test_no_phone_column_lists_the_headers_seen(groups, tmp_path):
    f = write_csv(tmp_path / "l.csv", [["张三", "x"]], headers=["姓名", "号码?"])
    with pytest.raises(ImportFileError, match=r"no phone column found \(headers seen: 姓名, 号码\?\)"):
        import_members(groups, f)


def test_map_overrides_by_header_and_letter(groups, tmp_path):
    f = write_csv(tmp_path / "l.csv", [["张三", "13805141234", "城南社区党支部"]], headers=["人员", "号码", "部门"])
    s = import_members(groups, f, ImportOptions(column_map={"phone": "号码", "name": "A"}, group_column="C"))
    assert s.added == 1 and show_member(groups, "13805141234").name == "张三"
    with pytest.raises(ImportFileError, match="unknown field 'mobile'"):
        import_members(groups, f, ImportOptions(column_map={"mobile": "号码"}))
    with pytest.raises(ImportFileError, match="no such column"):
        import_members(groups, f, ImportOptions(column_map={"phone": "手机"}))


def test_bad_numbers_rejected_with_excel_row_numbers_and_reasons(groups, tmp_path):
    rows = [
        [1, "甲", "0514-84683100", "城南社区党支部"],
        [2, "乙", "1380514123", "城南社区党支部"],
        [3, "丙", "", "城南社区党支部"],
        [4, "丁", "1.38051E+10", "城南社区党支部"],
        [5, "戊", "13805141234.0", "城南社区党支部"],
        [6, "己", "0086 139 0514 1234", "城南社区党支部"],
    ]
    f = write_csv(tmp_path / "l.csv", rows, encoding="gb18030", headers=["序号", "姓名", "手机号码", "所属支部"])
    s = import_members(groups, f)
    assert (s.added, s.rejected) == (2, 4)
    got = [(e.row, e.value, e.reason.split(" ")[0]) for e in s.errors]
    assert got == [(2, "0514-84683100", "landline"), (3, "1380514123", "too"), (4, "", "empty"),
                   (5, "1.38051E+10", "scientific")]


def test_errors_out_is_written_in_the_input_format(groups, tmp_path):
    rows = [[1, "张三", "13805141234", "城南社区党支部"], [2, "李四", "0514-84683100", "城南社区党支部"],
            [3, "王五", "13805141234", "城南社区党支部"]]
    f = write_csv(tmp_path / "l.csv", rows, encoding="gb18030", headers=["序号", "姓名", "手机号码", "所属支部"])
    out = tmp_path / "fix.csv"
    s = import_members(groups, f, ImportOptions(errors_out=out))
    assert (s.rejected, s.conflicts) == (1, 1)
    back = read_csv(out, "gb18030")
    assert back[0] == ["序号", "姓名", "手机号码", "所属支部", "reason"]
    assert back[1][:4] == ["2", "李四", "0514-84683100", "城南社区党支部"] and "landline" in back[1][4]
    assert back[2][:4] == ["3", "王五", "13805141234", "城南社区党支部"] and "'张三'" in back[2][4]
    # an .xlsx input gets an .xlsx errors file
    xl = write_xlsx(tmp_path / "l.xlsx", rows[1:2], headers=["序号", "姓名", "手机号码", "所属支部"])
    out_x = tmp_path / "fix.xlsx"
    import_members(groups, xl, ImportOptions(errors_out=out_x))
    from openpyxl import load_workbook

    cells = [[c.value for c in r] for r in load_workbook(out_x).active.iter_rows()]
    assert cells[0][-1] == "reason" and cells[1][:3] == [2, "李四", "0514-84683100"]


def test_same_phone_twice_is_one_member_in_every_group(groups, tmp_path):
    rows = [[1, "张三", "13805141234", "城南社区党支部"], [2, "张三", "138-0514-1234", "青石村党支部"],
            [3, "", "13805141234", "青石村党支部"]]
    f = write_csv(tmp_path / "l.csv", rows, headers=["序号", "姓名", "手机号码", "所属支部"])
    s = import_members(groups, f)
    assert counts(s) == dict(added=1, updated=0, unchanged=0, rejected=0, duplicates=2, conflicts=0)
    assert show_member(groups, "13805141234").groups == ["城南社区党支部", "青石村党支部"]
    assert table_counts(groups)["memberships"] == 2


def test_name_conflicts_are_reported_and_never_overwrite(groups, tmp_path):
    add_member(groups, "张三", "13805141234", ["城南社区党支部"])
    rows = [[1, "张叁", "13805141234", "青石村党支部"], [2, "李四", "13905141234", "城南社区党支部"],
            [3, "李斯", "13905141234", "青石村党支部"]]
    f = write_csv(tmp_path / "l.csv", rows, headers=["序号", "姓名", "手机号码", "所属支部"])
    s = import_members(groups, f)
    assert counts(s) == dict(added=1, updated=0, unchanged=0, rejected=0, duplicates=0, conflicts=2)
    assert [(e.row, e.kind, e.value) for e in s.errors] == [(2, "conflict", "张叁"), (4, "conflict", "李斯")]
    assert show_member(groups, "13805141234").name == "张三"
    assert show_member(groups, "13805141234").groups == ["城南社区党支部"]  # the conflicting row was not applied
    assert show_member(groups, "13905141234").groups == ["城南社区党支部"]


def test_existing_member_gains_groups_and_title_is_updated(groups, tmp_path):
    add_member(groups, "张三", "13805141234", ["城南社区党支部"])
    f = write_csv(tmp_path / "l.csv", [[1, "张三", "13805141234", "青石村党支部", "组织委员", ""]])
    s = import_members(groups, f)
    assert (s.updated, s.unchanged) == (1, 0)
    m = show_member(groups, "13805141234")
    assert m.groups == ["城南社区党支部", "青石村党支部"] and m.title == "组织委员"


def test_unknown_groups_rejected_unless_created(groups, tmp_path):
    rows = [[1, "张三", "13805141234", "城南社区党支部"], [2, "李四", "13905141234", "黄泥村党支布"]]
    f = write_csv(tmp_path / "l.csv", rows, headers=["序号", "姓名", "手机号码", "所属支部"])
    s = import_members(groups, f, ImportOptions(dry_run=True))
    assert (s.added, s.rejected) == (1, 1)
    assert s.errors[0].row == 3 and "does not exist" in s.errors[0].reason and "--create-groups" in s.errors[0].reason
    s = import_members(groups, f, ImportOptions(create_groups=True))
    assert (s.added, s.rejected, s.groups_created) == (2, 0, ["黄泥村党支布"])


def test_fixed_group_option(groups, tmp_path):
    f = write_csv(tmp_path / "l.csv", [["张三", "13805141234"]], headers=["姓名", "手机"])
    with pytest.raises(ImportFileError, match="no group column"):
        import_members(groups, f)
    with pytest.raises(NotFoundError, match="no group named '新支部'"):
        import_members(groups, f, ImportOptions(group="新支部"))
    with pytest.raises(InputError, match="either --group or --group-column"):
        import_members(groups, f, ImportOptions(group="a", group_column="b"))
    s = import_members(groups, f, ImportOptions(group="新支部", create_groups=True))
    assert s.added == 1 and s.groups_created == ["新支部"]


def test_reimport_is_idempotent(groups, tmp_path):
    rows = ROWS + [[4, "张三", "13805141234", "青石村党支部", "", ""], [5, "坏", "123", "青石村党支部", "", ""]]
    f = write_csv(tmp_path / "l.csv", rows)
    first = import_members(groups, f)
    assert counts(first) == dict(added=3, updated=0, unchanged=0, rejected=1, duplicates=1, conflicts=0)
    before = table_counts(groups)
    with groups.engine.connect() as conn:
        snapshot = conn.execute(sa.text("SELECT * FROM members ORDER BY id")).all()
    again = import_members(groups, f)
    assert counts(again) == dict(added=0, updated=0, unchanged=3, rejected=1, duplicates=1, conflicts=0)
    assert table_counts(groups) == before
    with groups.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT * FROM members ORDER BY id")).all() == snapshot


def test_dry_run_changes_nothing(groups, tmp_path):
    f = write_csv(tmp_path / "l.csv", ROWS)
    before = table_counts(groups)
    s = import_members(groups, f, ImportOptions(dry_run=True, create_groups=True))
    assert s.added == 3 and s.dry_run
    assert table_counts(groups) == before


def test_interrupted_import_leaves_the_database_as_it_was(groups, tmp_path, monkeypatch):
    import broadcast.recipients.importer as importer

    monkeypatch.setattr(importer, "BATCH", 10)
    rows = [[i, f"人{i}", f"1380000{i:04d}", "城南社区党支部", "", ""] for i in range(100)]
    f = write_csv(tmp_path / "l.csv", rows)
    out = tmp_path / "errors.csv"

    def interrupt(n: int) -> None:
        if n >= 50:
            raise KeyboardInterrupt

    before = table_counts(groups)
    with pytest.raises(KeyboardInterrupt):
        import_members(groups, f, ImportOptions(errors_out=out), progress=interrupt)
    assert table_counts(groups) == before
    assert not out.exists() and list(tmp_path.glob(".errors.csv*")) == []
    assert import_members(groups, f).added == 100


def test_optouts_survive_reimport_and_removal(groups, tmp_path):
    add_optout(groups, "13805141234", "本人退订")
    f = write_csv(tmp_path / "l.csv", ROWS)
    import_members(groups, f)
    assert show_member(groups, "13805141234").opted_out
    from broadcast.recipients.members import remove_member

    remove_member(groups, "13805141234")
    import_members(groups, f)
    assert show_member(groups, "13805141234").opted_out


def test_unreadable_files(groups, tmp_path):
    with pytest.raises(ImportFileError, match="file not found"):
        import_members(groups, tmp_path / "missing.csv")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(ImportFileError, match="save the sheet as .xlsx or CSV"):
        import_members(groups, tmp_path / "old.xls")
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip")
    with pytest.raises(ImportFileError, match="not a readable .xlsx"):
        import_members(groups, tmp_path / "bad.xlsx")



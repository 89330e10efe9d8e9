"""Contact points besides the phone: email and WeCom / DingTalk / Feishu ids, in the import (same
per-row reports as a bad phone), in member add / edit / list / export, and shared ones as warnings."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from broadcast.errors import InputError
from broadcast.recipients.contacts import check_contact
from broadcast.recipients.groups import add_group
from broadcast.recipients.importer import ImportOptions, import_members
from broadcast.recipients.members import add_member, edit_member, export_members, list_members, show_member
from tests.helpers.files import read_csv, write_csv, write_xlsx

pytestmark = pytest.mark.both_stores

HEADERS = ["序号", "姓名", "手机号码", "所属支部", "邮箱", "企业微信", "钉钉", "飞书"]


@pytest.fixture
def branch(ws):
    add_group(ws, "城南社区党支部")
    add_group(ws, "青石村党支部")
    return ws


@pytest.mark.parametrize("field,value,cleaned", [
    ("email", "Zhang.San@163.COM", "Zhang.San@163.com"),
    ("email", " zhangsan＠qq．com ", "zhangsan@qq.com"),  # typed with a Chinese IME
    ("email", "a+b@mail.example.org.", "a+b@mail.example.org"),
    ("wecom", "ZhangSan", "ZhangSan"),
    ("wecom", "zhang.san@chengnan", "zhang.san@chengnan"),
    ("dingtalk", "0123456789", "0123456789"),
    ("dingtalk", 1234567890123456.0, "1234567890123456"),  # a number cell
    ("feishu", "ou_7d8a6e6df7621556ce0d21922b676706", "ou_7d8a6e6df7621556ce0d21922b676706"),
    ("feishu", "", ""),
    ("email", None, ""),
])
def test_good_contact_points_are_cleaned(field, value, cleaned):
    assert check_contact(field, value) == (cleaned, None)


@pytest.mark.parametrize("field,value,why", [
    ("email", "zhang san@163.com", "no spaces"),
    ("email", "zhangsan163.com", "exactly one @"),
    ("email", "a@b@163.com", "exactly one @"),
    ("email", "zhangsan@163", "domain"),
    ("email", "zhangsan@163.c0m", ".com or .cn"),
    ("email", ".zhang@163.com", "before @"),
    ("email", "zhang..san@163.com", "before @"),
    ("email", "张三@163.com", "before @"),
    ("email", "z@" + ".".join(["a" * 63] * 4) + ".com", "too long"),
    ("wecom", "_zhangsan", "starting with a letter or digit"),
    ("wecom", "张三", "letters, digits"),
    ("wecom", "zhang san", "letters, digits"),
    ("wecom", "x" * 65, "too long"),
    ("dingtalk", "1.23457E+15", "scientific notation"),
    ("dingtalk", "a,b", "no spaces"),
    ("feishu", "飞书用户", "ASCII"),
    ("feishu", "ou 123", "no spaces"),
])
def test_bad_contact_points_have_a_reason(field, value, why):
    cleaned, reason = check_contact(field, value)
    assert reason is not None and why in reason


def test_import_reads_the_columns_and_rejects_bad_rows_like_a_bad_phone(branch, tmp_path):
    rows = [
        [1, "张三", "13805141234", "城南社区党支部", "ZhangSan@163.COM", "zhangsan", "", "ou_zhangsan01"],
        [2, "李四", "13905141234", "城南社区党支部", "lisi@163", "", "", ""],
        [3, "王五", "13705141234", "城南社区党支部", "", "王五", "", ""],
        [4, "赵六", "13605141234", "城南社区党支部", "", "", "1.23457E+15", ""],
        [5, "钱七", "13505141234", "城南社区党支部", "", "", "manager7", ""],
    ]
    f = write_csv(tmp_path / "名单.csv", rows, encoding="gb18030", headers=HEADERS)
    out = tmp_path / "退回.csv"
    s = import_members(branch, f, ImportOptions(group_column="所属支部", errors_out=out))
    assert (s.added, s.rejected) == (2, 3)
    assert [(e.row, e.field, e.value, e.kind) for e in s.errors] == [
        (3, "email", "lisi@163", "rejected"), (4, "wecom", "王五", "rejected"), (5, "dingtalk", "1.23457E+15", "rejected")]
    assert "domain" in s.errors[0].reason
    m = show_member(branch, "13805141234")
    assert (m.email, m.wecom, m.dingtalk, m.feishu) == ("ZhangSan@163.com", "zhangsan", "", "ou_zhangsan01")
    assert show_member(branch, "13505141234").dingtalk == "manager7"
    back = read_csv(out, "gb18030")
    assert back[0] == [*HEADERS, "reason"]
    assert [r[4:8] for r in back[1:]] == [["lisi@163", "", "", ""], ["", "王五", "", ""], ["", "", "1.23457E+15", ""]]
    assert "WeCom userid" in back[2][-1]


@pytest.mark.parametrize("headers", [
    ["姓名", "手机号码", "电子邮箱", "企业微信账号", "钉钉账号", "飞书账号"],
    ["name", "mobile", "E-mail", "UserID", "DingTalk", "Feishu"],
    ["姓名", "手机", "email", "wecom", "钉钉", "飞书"],
])
def test_header_aliases(branch, tmp_path, headers):
    f = write_xlsx(tmp_path / "l.xlsx", [["张三", "13805141234", "z@qq.com", "zs", 123456789012, "ou_1"]], headers=headers)
    assert import_members(branch, f, ImportOptions(group="城南社区党支部")).added == 1
    m = show_member(branch, "13805141234")
    assert (m.email, m.wecom, m.dingtalk, m.feishu) == ("z@qq.com", "zs", "123456789012", "ou_1")


def test_reimport_sets_and_replaces_but_an_empty_cell_keeps(branch, tmp_path):
    headers = ["姓名", "手机号码", "邮箱", "企业微信"]
    f = write_csv(tmp_path / "a.csv", [["张三", "13805141234", "z@qq.com", "zs"]], headers=headers)
    assert import_members(branch, f, ImportOptions(group="城南社区党支部")).added == 1
    s = import_members(branch, f, ImportOptions(group="城南社区党支部"))
    assert (s.unchanged, s.updated) == (1, 0)
    f = write_csv(tmp_path / "b.csv", [["张三", "13805141234", "", "zhangsan"]], headers=headers)
    s = import_members(branch, f, ImportOptions(group="城南社区党支部"))
    assert (s.unchanged, s.updated) == (0, 1)
    m = show_member(branch, "13805141234")
    assert (m.email, m.wecom) == ("z@qq.com", "zhangsan")
    f = write_csv(tmp_path / "c.csv", [["张三", "13805141234"]], headers=headers[:2])  # no such columns at all
    assert import_members(branch, f, ImportOptions(group="城南社区党支部")).unchanged == 1
    assert show_member(branch, "13805141234").email == "z@qq.com"


def test_a_repeated_phone_takes_the_first_value_given(branch, tmp_path):
    rows = [["张三", "13805141234", "城南社区党支部", ""], ["张三", "13805141234", "青石村党支部", "z@qq.com"]]
    f = write_csv(tmp_path / "a.csv", rows, headers=["姓名", "手机号码", "支部", "邮箱"])
    s = import_members(branch, f)
    assert (s.added, s.duplicates) == (1, 1)
    assert show_member(branch, "13805141234").email == "z@qq.com"


def test_a_shared_email_or_id_is_imported_with_a_warning(branch, tmp_path):
    add_member(branch, "党支部办公室", "13905141234", ["城南社区党支部"], email="office@chengnan.gov.cn")
    rows = [["张三", "13805141234", "Office@ChengNan.gov.cn", "zs"], ["李四", "13705141234", "", "ZS"]]
    f = write_csv(tmp_path / "a.csv", rows, headers=["姓名", "手机号码", "邮箱", "企业微信"])
    s = import_members(branch, f, ImportOptions(group="城南社区党支部", errors_out=tmp_path / "e.csv"))
    assert (s.added, s.rejected, s.warnings) == (2, 0, 2)
    assert [(e.row, e.field, e.kind) for e in s.errors] == [(2, "email", "warning"), (2, "wecom", "warning")]
    assert "党支部办公室 +8613905141234" in s.errors[0].reason
    assert "李四 +8613705141234" in s.errors[1].reason
    assert len(read_csv(tmp_path / "e.csv", "utf-8")) == 1  # a warning is not a rejected row


def test_dry_run_writes_no_contact_point(branch, tmp_path):
    f = write_csv(tmp_path / "a.csv", [["张三", "13805141234", "z@qq.com"]], headers=["姓名", "手机号码", "邮箱"])
    import_members(branch, f, ImportOptions(group="城南社区党支部", dry_run=True))
    assert list_members(branch) == []


def test_member_add_edit_and_clear(branch):
    r = add_member(branch, "张三", "13805141234", ["城南社区党支部"], email="Z@QQ.com", wecom="zs")
    assert (r.member.email, r.member.wecom, r.warnings) == ("Z@qq.com", "zs", [])
    r = add_member(branch, "张三", "13805141234", ["青石村党支部"], dingtalk="ding1")  # an existing member: set
    assert (r.member.email, r.member.dingtalk) == ("Z@qq.com", "ding1")
    m = edit_member(branch, "13805141234", email="", feishu="ou_1")
    assert (m.email, m.wecom, m.feishu) == ("", "zs", "ou_1")
    with pytest.raises(InputError, match=r"--email 'zs@': not an email address"):
        edit_member(branch, "13805141234", email="zs@", wecom="other")
    assert show_member(branch, "13805141234").wecom == "zs"  # nothing half-written
    r = add_member(branch, "李四", "13905141234", ["城南社区党支部"], wecom="ZS")
    assert r.warnings == ["WeCom userid ZS is also that of 张三 +8613805141234"]
    with branch.engine.connect() as conn:
        details = [d for (d,) in conn.execute(sa.text("SELECT details FROM audit_log ORDER BY id"))]
    assert not any("Z@qq.com" in str(d) or '"zs"' in str(d) for d in details)


def test_list_search_and_export_round_trip(branch, tmp_path):
    add_member(branch, "张三", "13805141234", ["城南社区党支部"], email="zhangsan@qq.com", wecom="zs")
    assert [m.name for m in list_members(branch, search="zhangsan@")] == ["张三"]
    for name in ("out.csv", "out.xlsx"):
        export_members(branch, tmp_path / name)
        s = import_members(branch, tmp_path / name)
        assert (s.unchanged, s.rejected) == (1, 0)
    assert read_csv(tmp_path / "out.csv", "utf-8-sig")[1][5:] == ["zhangsan@qq.com", "zs", "", ""]


def test_a_conflicting_row_lends_no_contact_point(branch, tmp_path):
    add_member(branch, "张三", "13805141234", ["城南社区党支部"])
    rows = [["张叁", "13805141234", "wrong@qq.com"], ["张三", "13805141234", ""]]
    f = write_csv(tmp_path / "a.csv", rows, headers=["姓名", "手机号码", "邮箱"])
    s = import_members(branch, f, ImportOptions(group="城南社区党支部"))
    assert (s.conflicts, s.unchanged) == (1, 1)
    assert show_member(branch, "13805141234").email == ""


def test_map_names_a_contact_column(branch, tmp_path):
    f = write_csv(tmp_path / "a.csv", [["张三", "13805141234", "z@qq.com", "zs"]], headers=["姓名", "手机号码", "联系邮件", "IM"])
    s = import_members(branch, f, ImportOptions(group="城南社区党支部", column_map={"email": "联系邮件", "wecom": "D"}))
    assert s.added == 1
    assert (show_member(branch, "13805141234").email, show_member(branch, "13805141234").wecom) == ("z@qq.com", "zs")


def test_check_contact_never_raises_and_a_cleaned_value_stays_as_it_is():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["email", "wecom", "dingtalk", "feishu"]),
           st.one_of(st.text(max_size=80), st.emails(), st.from_regex(r"[A-Za-z0-9_.@-]{1,70}", fullmatch=True),
                     st.integers(), st.floats(allow_nan=False)))
    def check(field, value):
        cleaned, reason = check_contact(field, value)
        if reason is None:
            assert check_contact(field, cleaned) == (cleaned, None)
            assert len(cleaned) <= (254 if field == "email" else 64) and " " not in cleaned

    check()

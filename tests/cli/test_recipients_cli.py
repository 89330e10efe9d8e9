"""The group manager's commands end to end: exit codes, one-line errors, --json shapes."""

from __future__ import annotations

import sys

import pytest

from tests.helpers.files import read_csv, write_csv


@pytest.fixture
def branches(cli):
    assert cli("group", "add", "城南新区党工委").exit_code == 0
    assert cli("group", "add", "城南社区党支部", "--parent", "城南新区党工委").exit_code == 0
    assert cli("group", "add", "青石村党支部", "--parent", "城南新区党工委").exit_code == 0
    return cli


def test_groups_nest_and_json_shapes(branches):
    cli = branches
    assert cli("member", "add", "张三", "138 0514 1234", "--group", "城南社区党支部").exit_code == 0
    assert cli("member", "add", "张三", "13805141234", "-g", "青石村党支部").exit_code == 0
    assert cli("member", "add", "李四", "13905141234", "-g", "青石村党支部").exit_code == 0
    groups = {g["name"]: g for g in cli("group", "list", "--json").json()}
    assert groups["城南社区党支部"] == {"name": "城南社区党支部", "parent": "城南新区党工委", "members": 1, "subgroups": []}
    assert groups["城南新区党工委"]["subgroups"] == ["城南社区党支部", "青石村党支部"]
    show = cli("group", "show", "城南新区党工委", "--json").json()
    assert show["reach"] == 2 and show["members"] == 0
    members = cli("member", "list", "--group", "城南新区党工委", "--json").json()
    assert [(m["name"], m["phone"], m["groups"], m["opted_out"]) for m in members] == [
        ("张三", "+8613805141234", ["城南社区党支部", "青石村党支部"], False),
        ("李四", "+8613905141234", ["青石村党支部"], False),
    ]
    assert cli("member", "list", "--search", "0514 1234", "--json").json()[0]["name"] == "张三"


def test_errors_are_one_red_line_with_exit_1(branches):
    cli = branches
    r = cli("member", "add", "王五", "0514-84683100", "-g", "城南社区党支部")
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: invalid phone number '0514-84683100': landline")
    assert "Traceback" not in r.stderr + r.stdout
    r = cli("member", "add", "王五", "13705141234", "-g", "没有这个支部")
    assert r.exit_code == 1 and "no group named '没有这个支部'" in r.stderr and "broadcast group list" in r.stderr
    assert cli("member", "add", "王六", "13805141234", "-g", "城南社区党支部").exit_code == 0
    r = cli("member", "add", "张三", "13805141234", "-g", "城南社区党支部")
    assert r.exit_code == 1 and "+8613805141234 is already recorded as '王六', not '张三'" in r.stderr
    assert "broadcast member edit +8613805141234 --name 张三" in r.stderr


def test_usage_errors_exit_2(cli):
    assert cli("member", "add", "x").exit_code == 2
    assert cli("frobnicate").exit_code == 2
    assert cli("member", "import", "f.csv", "--map", "nonsense").exit_code == 2


def test_group_remove_refuses_with_members_unless_forced(branches):
    cli = branches
    cli("member", "add", "张三", "13805141234", "-g", "城南社区党支部")
    r = cli("group", "remove", "城南社区党支部")
    assert r.exit_code == 1 and "still has 1 member" in r.stderr and "--force" in r.stderr
    r = cli("group", "remove", "城南新区党工委")
    assert r.exit_code == 1 and "2 sub-groups" in r.stderr
    assert cli("group", "remove", "城南社区党支部", "--force").exit_code == 0
    assert cli("member", "show", "13805141234", "--json").json()["groups"] == []
    assert cli("group", "remove", "城南新区党工委", "--force").exit_code == 0
    assert cli("group", "show", "青石村党支部", "--json").json()["parent"] is None


def test_group_rename(branches):
    cli = branches
    assert cli("group", "rename", "青石村党支部", "青石村党总支").exit_code == 0
    assert cli("group", "rename", "青石村党总支", "城南社区党支部").exit_code == 1
    assert "青石村党总支" in [g["name"] for g in cli("group", "list", "--json").json()]


def test_member_edit_remove_and_optouts(branches):
    cli = branches
    cli("member", "add", "张三", "13805141234", "-g", "城南社区党支部")
    r = cli("member", "edit", "13805141234", "--name", "张叁", "--title", "书记", "--add-group", "青石村党支部",
            "--remove-group", "城南社区党支部", "--json")
    assert r.exit_code == 0, r
    assert (r.json()["name"], r.json()["title"], r.json()["groups"]) == ("张叁", "书记", ["青石村党支部"])
    r = cli("optout", "add", "+86 138 0514 1234", "--reason", "本人回复退订", "--json")
    assert r.json()["phone"] == "+8613805141234" and r.json()["reason"] == "本人回复退订" and "created_at" in r.json()
    assert cli("member", "show", "13805141234", "--json").json()["opted_out"] is True
    assert cli("group", "show", "青石村党支部", "--json").json()["reach"] == 0
    assert cli("member", "remove", "13805141234").exit_code == 0
    assert cli("member", "show", "13805141234").exit_code == 1
    optouts = cli("optout", "list", "--json").json()
    assert [(o["phone"], o["reason"]) for o in optouts] == [("+8613805141234", "本人回复退订")]
    assert cli("optout", "remove", "13805141234").exit_code == 0
    r = cli("optout", "remove", "13805141234")
    assert r.exit_code == 1 and "not opted out" in r.stderr


def test_import_json_summary_and_errors_out(branches, tmp_path):
    cli = branches
    rows = [[1, "张三", "138 0514 1234", "城南社区党支部"], [2, "李四", "1.38051E+10", "城南社区党支部"],
            [3, "张叁", "13805141234", "青石村党支部"], [4, "王五", "13705141234", "不存在支部"]]
    f = write_csv(tmp_path / "名单.csv", rows, encoding="gb18030", headers=["序号", "姓名", "手机号码", "所属支部"])
    out = tmp_path / "退回.csv"
    r = cli("member", "import", f, "--group-column", "所属支部", "--errors-out", out, "--json")
    assert r.exit_code == 0, r
    data = r.json()
    assert {k: data[k] for k in ("added", "updated", "unchanged", "rejected", "duplicates", "conflicts")} == \
        dict(added=1, updated=0, unchanged=0, rejected=2, duplicates=0, conflicts=1)
    assert [(e["row"], e["value"]) for e in data["errors"]] == [(3, "1.38051E+10"), (4, "张叁"), (5, "不存在支部")]
    assert all(set(e) >= {"row", "value", "reason"} for e in data["errors"])
    assert len(read_csv(out, "gb18030")) == 4
    r = cli("member", "import", f, "--group-column", "所属支部")
    assert r.exit_code == 0 and "unchanged" in r.stdout and "Row" in r.stdout


def test_import_bad_file_is_exit_1_and_nothing_written(branches, tmp_path):
    cli = branches
    f = write_csv(tmp_path / "l.csv", [["张三", "x"]], headers=["姓名", "备注"])
    r = cli("member", "import", f, "--group", "城南社区党支部", "--errors-out", tmp_path / "e.csv")
    assert r.exit_code == 1 and "no phone column found (headers seen: 姓名, 备注)" in r.stderr
    assert not (tmp_path / "e.csv").exists()


def test_member_export_round_trips(branches, tmp_path):
    cli = branches
    cli("member", "add", "张三", "13805141234", "-g", "城南社区党支部", "-g", "青石村党支部", "--title", "书记")
    for name in ("out.csv", "out.xlsx"):
        assert cli("member", "export", tmp_path / name).exit_code == 0
        r = cli("member", "import", tmp_path / name, "--json")
        assert r.json()["unchanged"] == 1 and r.json()["duplicates"] == 1 and r.json()["rejected"] == 0


def test_config_masks_secrets(cli):
    r = cli("config", "--json", env={"BROADCAST_DATABASE_URL": "postgresql+psycopg://u:hunter2@db/x"})
    assert r.json()["database_url"] == "postgresql+psycopg://u:********@db/x"
    assert "hunter2" not in cli("config", env={"BROADCAST_DATABASE_URL": "postgresql://u:hunter2@db/x"}).stdout
    r = cli("config", env={"BROADCAST_DEFAULT_REGION": "China"})
    assert r.exit_code == 1 and "BROADCAST_DEFAULT_REGION" in r.stderr


def test_dotenv_file_is_read(cli, tmp_path, monkeypatch):
    env_file = tmp_path / "my.env"
    env_file.write_text("BROADCAST_OPERATOR=办公室小王\n", encoding="utf-8")
    monkeypatch.delenv("BROADCAST_OPERATOR")
    monkeypatch.setenv("BROADCAST_ENV_FILE", str(env_file))
    assert cli("config", "--json").json()["operator"] == "办公室小王"


def test_debug_shows_the_traceback(cli):
    with pytest.raises(Exception, match="no group named"):
        cli("group", "show", "nope", env={"BROADCAST_DEBUG": "1"})


def test_python_m_broadcast_works(tmp_path):
    import subprocess

    r = subprocess.run([sys.executable, "-m", "broadcast", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("broadcast ")


def test_group_targeted_by_an_unsent_message_cannot_be_removed(branches):
    cli = branches
    cli("member", "add", "张三", "13805141234", "-g", "城南社区党支部")
    r = cli("message", "new", "--text", "明天下午三点党员大会", "--to", "城南社区党支部", "--json")
    assert r.exit_code == 0, r
    mid = r.json()["id"]
    r = cli("group", "remove", "城南社区党支部", "--force")
    assert r.exit_code == 1 and "targeted by 1 unsent message" in r.stderr and f"message cancel {mid}" in r.stderr
    assert cli("message", "cancel", str(mid)).exit_code == 0
    assert cli("group", "remove", "城南社区党支部", "--force").exit_code == 0

"""The group manager's commands for channels beyond SMS: member contact points, opt-outs per
channel, group robots; exit codes, one-line errors, --json shapes, and no secret ever printed."""

from __future__ import annotations

import pytest

from tests.helpers.files import write_csv


@pytest.fixture
def branch(cli):
    assert cli("group", "add", "城南社区党支部").exit_code == 0
    return cli


def test_member_contact_points(branch):
    cli = branch
    r = cli("member", "add", "张三", "13805141234", "-g", "城南社区党支部", "--email", "ZS@163.COM", "--wecom", "zs",
            "--json")
    assert r.exit_code == 0, r
    assert {k: r.json()[k] for k in ("email", "wecom", "dingtalk", "feishu")} == \
        dict(email="ZS@163.com", wecom="zs", dingtalk="", feishu="")
    r = cli("member", "add", "李四", "13905141234", "-g", "城南社区党支部", "--wecom", "zs")
    assert r.exit_code == 0 and "Warning: WeCom userid zs is also that of 张三 +8613805141234" in r.stderr
    r = cli("member", "edit", "13805141234", "--email", "", "--feishu", "ou_1", "--json")
    assert (r.json()["email"], r.json()["feishu"]) == ("", "ou_1")
    r = cli("member", "edit", "13805141234", "--email", "zs@163")
    assert r.exit_code == 1 and r.stderr.count("\n") <= 2 and "--email 'zs@163': not an email address" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("member", "show", "13805141234")
    assert "ou_1" in r.stdout and "WeCom" in r.stdout
    r = cli("member", "list")
    assert "Also on" in r.stdout and "wecom, feishu" in r.stdout


def test_import_rejects_a_bad_email_row_with_its_row_number(branch, tmp_path):
    cli = branch
    f = write_csv(tmp_path / "l.csv", [["张三", "13805141234", "zs@@163.com"], ["李四", "13905141234", "ls@163.com"]],
                  headers=["姓名", "手机号码", "邮箱"])
    r = cli("member", "import", f, "-g", "城南社区党支部", "--json")
    assert r.exit_code == 0
    assert [(e["row"], e["field"], e["value"]) for e in r.json()["errors"]] == [(2, "email", "zs@@163.com")]
    r = cli("member", "import", f, "-g", "城南社区党支部")
    assert "email" in r.stdout and "zs@@163.com" in r.stdout


def test_optout_channels(branch):
    cli = branch
    cli("member", "add", "张三", "13805141234", "-g", "城南社区党支部")
    r = cli("optout", "add", "13805141234", "--channel", "wecom", "--reason", "不用企业微信", "--json")
    assert r.exit_code == 0 and r.json()["channels"] == ["wecom"]
    assert cli("optout", "add", "13805141234", "--channel", "email").exit_code == 0
    assert cli("member", "show", "13805141234", "--json").json()["opted_out"] is False  # SMS still reaches them
    r = cli("optout", "add", "13905141234", "-c", "all")
    assert r.exit_code == 0 and "of every channel" in r.stdout
    rows = {o["phone"]: o["channels"] for o in cli("optout", "list", "--json").json()}
    assert rows == {"+8613805141234": ["email", "wecom"], "+8613905141234": ["all"]}
    assert "email,wecom" in cli("optout", "list", env={"COLUMNS": "200"}).stdout
    r = cli("optout", "remove", "13905141234", "--channel", "wecom")
    assert r.exit_code == 0 and "still opted out of dingtalk, email, feishu, sms" in r.stdout
    r = cli("optout", "remove", "13805141234")
    assert r.exit_code == 1 and "is not opted out of sms" in r.stderr
    r = cli("optout", "add", "13805141234", "--channel", "fax")
    assert r.exit_code == 1 and "--channel 'fax': not a channel" in r.stderr
    assert cli("optout", "remove", "13805141234", "-c", "all").exit_code == 0
    assert [o["phone"] for o in cli("optout", "list", "--json").json()] == ["+8613905141234"]

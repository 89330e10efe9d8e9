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
    shown = cli("member", "show", "13805141234", "--json").json()
    assert shown["opted_out"] is False and shown["optouts"] == ["email", "wecom"]  # SMS still reaches them
    assert "email, wecom" in cli("member", "show", "13805141234").stdout
    assert "email,wecom" in cli("member", "list", env={"COLUMNS": "200"}).stdout
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


WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7f5e-4bc4-97a0-0ec2sifa1234"
DING = "https://oapi.dingtalk.com/robot/send?access_token=3ad9c1f4e5b6a7d8c9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0abcd"
FEISHU = "http://127.0.0.1:8765/open-apis/bot/v2/hook/6f8c1e2a-3b4d-4e5f-8a9b-0c1d2e3f9876"
SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"


def test_group_robot_set_list_show_remove_never_prints_a_credential(branch, monkeypatch):
    cli = branch
    outputs = []
    r = cli("group", "robot", "城南社区党支部", "--wecom", WECOM)
    assert r.exit_code == 0 and "Set the wecom robot of 城南社区党支部: " \
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=****1234" in r.stdout
    outputs.append(r)
    r = cli("group", "robot", "城南社区党支部", "--dingtalk", "-", "--secret", "-", input=f"{DING}\n{SECRET}\n", )
    assert r.exit_code == 0 and "(secret: set)" in r.stdout, r
    outputs.append(r)
    monkeypatch.setenv("BROADCAST_ROBOT_SECRET", "feishu-secret-xyz")
    r = cli("group", "robot", "城南社区党支部", "--feishu", FEISHU, "--json")
    assert r.json()["secret"] == "set" and r.json()["url"].endswith("/hook/****9876")
    outputs.append(r)
    monkeypatch.delenv("BROADCAST_ROBOT_SECRET")
    r = cli("group", "robot", "城南社区党支部", "--wecom", WECOM.replace("1234", "5678"))
    assert r.exit_code == 0 and r.stdout.startswith("Replaced the wecom robot")
    r = cli("group", "robot", "城南社区党支部", "--json")
    assert [(x["platform"], x["url"][-8:], x["secret"]) for x in r.json()] == [
        ("wecom", "****5678", ""), ("dingtalk", "****abcd", "set"), ("feishu", "****9876", "set")]
    outputs += [r, cli("group", "robot", "城南社区党支部", env={"COLUMNS": "200"}),
                cli("group", "show", "城南社区党支部"), cli("group", "show", "城南社区党支部", "--json"),
                cli("audit", "log", "--json"), cli("config", "--json")]
    assert all(o.exit_code == 0 for o in outputs), outputs
    assert "Robot (dingtalk): https://oapi.dingtalk.com/robot/send?access_token=****abcd  secret: set" in outputs[-4].stdout
    assert [e["action"] for e in outputs[-2].json() if e["action"].startswith("group.robot")] == ["group.robot"] * 4
    for out in outputs:
        text = out.stdout + out.stderr
        assert "693a91f6" not in text and "3ad9c1f4" not in text and "6f8c1e2a" not in text
        assert "SEC0" not in text and "feishu-secret" not in text
    r = cli("group", "robot", "城南社区党支部", "--remove", "wecom")
    assert r.exit_code == 0 and "Removed the wecom robot" in r.stdout
    r = cli("group", "robot", "城南社区党支部", "--remove", "wecom")
    assert r.exit_code == 1 and "has no wecom robot" in r.stderr


def test_group_robot_bad_input_is_one_line_exit_1(branch):
    cli = branch
    r = cli("group", "robot", "城南社区党支部", "--wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send")
    assert r.exit_code == 1 and "--wecom URL: its key= is missing or not a robot key" in r.stderr
    r = cli("group", "robot", "城南社区党支部", "--wecom", WECOM, "--secret", "x")
    assert r.exit_code == 1 and "a WeCom robot has no secret" in r.stderr and "693a91f6" not in r.stderr
    r = cli("group", "robot", "城南社区党支部", "--dingtalk", "-", input="")
    assert r.exit_code == 1 and "no dingtalk webhook URL on stdin" in r.stderr
    r = cli("group", "robot", "城南社区党支部", "--wecom", WECOM, "--feishu", FEISHU)
    assert r.exit_code == 2
    r = cli("group", "robot", "城南社区党支部", "--remove", "slack")
    assert r.exit_code == 1 and "'slack' is not a robot platform" in r.stderr
    assert cli("group", "robot", "城南社区党支部").stdout.startswith("城南社区党支部 has no robot")
    assert "Traceback" not in r.stderr


def test_a_secret_from_a_terminal_is_asked_for_hidden(monkeypatch):
    import io
    import sys

    import typer

    from broadcast.cli import group_cmd

    asked = []

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty(""))
    monkeypatch.setattr(typer, "prompt", lambda text, hide_input=False: asked.append((text, hide_input)) or "SECabc")
    assert group_cmd._read_stdin("signing secret") == "SECabc"
    assert asked == [("Signing secret", True)]

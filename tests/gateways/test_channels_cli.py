"""The channels from the command line, against their local fakes: ``gateway list`` shows what each
addresses, ``gateway check --online`` and ``gateway test`` work for each, ``send``/``run`` refuse
them as the SMS gateway, and no key, secret or password appears in anything printed or in the
database (the audit trail included)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.gateways.fake_robots import FakeFeishu, FakeWeComRobot
from tests.gateways.fake_smtp import MailServer, smtp_server
from tests.gateways.fake_wecom_app import FakeWeComApp

KEY, HOOK, HOOK_SECRET = "kit-cli-wecom-key-5f0e2a", "kit-cli-feishu-hook-77ab31", "kit-cli-feishu-secret-c4d9"
CORP_SECRET, SMTP_PASSWORD = "kit-cli-corp-secret-90aa1b", "kit-cli-smtp-code-3e7d"
SECRETS = [KEY, HOOK, HOOK_SECRET, CORP_SECRET, SMTP_PASSWORD]


def everything_stored(tmp_path: Path) -> str:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'broadcast.db'}")
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            out += [repr(tuple(row)) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"'))]
    engine.dispose()
    return "\n".join(out)


def test_gateway_list_declares_what_each_channel_addresses(cli: Any) -> None:
    caps = {c["name"]: c for c in cli("gateway", "list", "--json").json()}
    assert {n: caps[n]["addresses"] for n in ("wecom-robot", "dingtalk-robot", "feishu-robot", "wecom-app", "email", "aliyun")} == {
        "wecom-robot": "group_chat", "dingtalk-robot": "group_chat", "feishu-robot": "group_chat",
        "wecom-app": "user_id", "email": "email", "aliyun": "phone"}
    assert caps["wecom-robot"]["per_address_rates"] == [{"count": 20, "per_s": 60.0}]
    assert caps["wecom-robot"]["max_text_bytes"] == 2048 and caps["aliyun"]["per_address_rates"] == []


def test_check_test_and_refusal_for_each_channel(cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wecom = FakeWeComRobot({KEY: ""})
    feishu = FakeFeishu({HOOK: HOOK_SECRET})
    app = FakeWeComApp("ww-cli-corp", CORP_SECRET, 1000002, {"ZhangSan"})
    mail = MailServer()
    printed: list[str] = []
    with wecom.running() as wecom_url, feishu.running() as feishu_url, app.running() as app_url, smtp_server(mail) as port:
        env = {
            "BROADCAST_WECOM_ROBOT_ROBOTS": json.dumps({"城南社区党支部": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"}),
            "BROADCAST_WECOM_ROBOT_ENDPOINT": wecom_url,
            "BROADCAST_FEISHU_ROBOT_ROBOTS": f"https://open.feishu.cn/open-apis/bot/v2/hook/{HOOK}",
            "BROADCAST_FEISHU_ROBOT_SECRET": HOOK_SECRET, "BROADCAST_FEISHU_ROBOT_ENDPOINT": feishu_url,
            "BROADCAST_WECOM_APP_CORP_ID": "ww-cli-corp", "BROADCAST_WECOM_APP_CORP_SECRET": CORP_SECRET,
            "BROADCAST_WECOM_APP_AGENT_ID": "1000002", "BROADCAST_WECOM_APP_ENDPOINT": app_url,
            "BROADCAST_EMAIL_HOST": "127.0.0.1", "BROADCAST_EMAIL_PORT": str(port), "BROADCAST_EMAIL_SECURITY": "none",
            "BROADCAST_EMAIL_PASSWORD": SMTP_PASSWORD, "BROADCAST_EMAIL_FROM_ADDRESS": "城南新区 <notice@chengnan.example.org>",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        for name, to in [("wecom-robot", "城南社区党支部"), ("feishu-robot", "default"), ("wecom-app", "ZhangSan"),
                         ("email", "member@chengnan.example.org")]:
            check = cli("gateway", "check", "--gateway", name, "--online")
            assert check.exit_code == 0, check
            test = cli("gateway", "test", "--gateway", name, to, "--text", "通知：测试", "--json")
            assert test.exit_code == 0, test
            assert test.json()["outcome"] == "accepted"
            printed += [check.stdout, check.stderr, test.stdout, test.stderr]
        config = cli("config")
        printed += [config.stdout, config.stderr]
        monkeypatch.setenv("BROADCAST_GATEWAY", "wecom-robot")
        run = cli("run")
        printed += [run.stdout, run.stderr]
    assert run.exit_code == 1 and "addresses group chats, not phones" in run.stderr and "Traceback" not in run.stderr
    assert wecom.texts() == feishu.texts() == ["通知：测试"] and wecom.posts[0].robot == KEY
    assert [(u, t) for u, t, _ in app.delivered] == [("ZhangSan", "通知：测试")]
    assert [m.text for m in mail.received] == ["通知：测试"] and mail.received[0].rcpt_to == ["member@chengnan.example.org"]
    stored = everything_stored(tmp_path)
    assert "m***@chengnan.example.org" in stored  # the audit trail names the test's address, masked
    text = "\n".join(printed) + stored
    assert [s for s in SECRETS if s in text] == []

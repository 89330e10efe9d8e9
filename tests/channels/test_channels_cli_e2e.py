"""The channels from the office's terminal, end to end: contact points come in with the member list
(企业微信 column), a branch's chat robot is set with ``group robot``, a person opts out of WeCom only,
and the morning message goes ``--channel group-robots,wecom-app,sms --fallback sms``."""

from __future__ import annotations

from tests.channels.helpers import AGENT, CORP, CORP_SECRET, wecom_app_env
from tests.gateways.fake_robots import FakeWeComRobot
from tests.gateways.fake_wecom_app import FakeWeComApp

KEY = "cli-e2e-robot-key-7c1d"


def test_import_robot_optout_and_a_message_on_three_channels(cli, monkeypatch, tmp_path):
    for k, v in {"BROADCAST_SIGNATURE": "【城南新区】", "BROADCAST_SIMULATOR_LATENCY_MS": "0",
                 "BROADCAST_SIMULATOR_FAILURE_RATE": "0", "BROADCAST_REQUIRE_APPROVAL": "false",
                 "BROADCAST_QUIET_HOURS": "", "BROADCAST_GATEWAY": "simulator", "COLUMNS": "200"}.items():
        monkeypatch.setenv(k, v)
    for args in (("group", "add", "党工委"), ("group", "add", "一支部", "--parent", "党工委"),
                 ("group", "add", "二支部", "--parent", "党工委")):
        assert cli(*args).exit_code == 0
    members = tmp_path / "名单.csv"
    members.write_text("姓名,手机,所属支部,企业微信\n张三,13900000001,一支部,\n李四,13900000002,二支部,lisi\n"
                       "王五,13900000003,二支部,wangwu\n赵六,13900000004,二支部,left-wecom\n", encoding="gb18030")
    r = cli("member", "import", str(members), "--group-column", "所属支部")
    assert r.exit_code == 0, r
    r = cli("group", "robot", "一支部", "--wecom", f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}")
    assert r.exit_code == 0 and KEY not in r.stdout, r
    assert cli("optout", "add", "13900000003", "--channel", "wecom", "--reason", "只要短信").exit_code == 0
    robot = FakeWeComRobot({KEY: ""})
    app = FakeWeComApp(CORP, CORP_SECRET, AGENT, {"lisi", "wangwu"})
    with robot.running() as robot_url, app.running() as app_url:
        for k, v in {**wecom_app_env(app_url), "BROADCAST_WECOM_ROBOT_ENDPOINT": robot_url}.items():
            monkeypatch.setenv(k, v)
        r = cli("message", "new", "--text", "今日精神早餐：{group}。", "--to", "党工委",
                "--channel", "group-robots,wecom-app,sms", "--fallback", "sms")
        assert r.exit_code == 0, r
        run = cli("run", "--json")
    assert run.exit_code == 0, run
    out = run.json()
    assert out["channels"] == [{"id": 1, "deliveries": {"wecom-robot": 1, "people_in_chats": 1, "wecom-app": 2,
                                                       "sms": 1}}]
    assert out["fell_back_to_sms"] == 1 and out["completed"] == [1]
    assert robot.texts() == ["【城南新区】今日精神早餐：一支部。"]  # 张三's branch chat
    assert [u for u, _, _ in app.delivered] == ["lisi"]  # 王五 opted out of WeCom, 赵六 left it
    log = cli("log", "--message", "1", "--json").json()
    by_name = {row["name"]: row["channel"] for row in log}
    assert by_name == {"一支部": "wecom-robot", "李四": "wecom-app", "王五": "sms", "赵六": "sms"}

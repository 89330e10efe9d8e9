"""Reports, ``message show`` and ``run`` break a mixed-channel send down by channel; a post or a
WeCom message is neither counted as an SMS nor costed."""

from __future__ import annotations

from tests.channels.helpers import AGENT, CORP, CORP_SECRET, build_org, wecom_app_env
from tests.gateways.fake_wecom_app import FakeWeComApp

BRANCHES = {"一支部": [("张三", 1, "zhangsan", ""), ("李四", 2, "", ""), ("王五", 3, "ghost", "")]}


def test_report_show_and_run_by_channel(ws, cli, monkeypatch):
    for k, v in {"BROADCAST_SIGNATURE": "【城南新区】", "BROADCAST_SIMULATOR_LATENCY_MS": "0",
                 "BROADCAST_SIMULATOR_FAILURE_RATE": "0", "BROADCAST_REQUIRE_APPROVAL": "false", "BROADCAST_QUIET_HOURS": "",
                 "BROADCAST_GATEWAY": "simulator", "BROADCAST_PRICE_SIMULATOR": "0.04", "COLUMNS": "200"}.items():
        monkeypatch.setenv(k, v)
    build_org(ws, BRANCHES)
    app = FakeWeComApp(CORP, CORP_SECRET, AGENT, {"zhangsan"})
    with app.running() as url:
        for k, v in wecom_app_env(url).items():
            monkeypatch.setenv(k, v)
        r = cli("message", "new", "--text", "{name}同志：今日精神早餐。", "--to", "党工委", "--channel", "wecom-app,sms",
                "--fallback", "sms")
        assert r.exit_code == 0, r
        run = cli("run")
    assert run.exit_code == 0, run
    assert "Message 1 by channel: wecom-app 2, sms 1" in run.stdout
    assert "1 sent by SMS instead" in run.stdout
    show = cli("message", "show", "1", "--json").json()
    assert (show["channels"], show["fallback"]) == ("wecom-app,sms", "sms")
    assert set(show["by_channel"]) == {"wecom-app", "sms"}
    assert sum(show["by_channel"]["sms"].values()) == 2 and sum(show["by_channel"]["wecom-app"].values()) == 1
    human = cli("message", "show", "1")
    assert "Channels: wecom-app, sms; fallback: sms" in human.stdout and "  wecom-app: accepted 1" in human.stdout
    rep = cli("report", "--by", "channel", "--json").json()
    rows = {r["key"]: r for r in rep["rows"]}
    assert set(rows) == {"sms", "wecom-app"}
    assert rows["wecom-app"]["deliveries"] == 1 and rows["wecom-app"]["sms"] == 0
    assert rows["sms"]["deliveries"] == 2 and rows["sms"]["sms"] == 2
    assert rep["total"]["cost"] == "0.08"
    bad = cli("message", "new", "--text", "x", "--to", "党工委", "--channel", "wechat")
    assert bad.exit_code == 1 and "unknown channel 'wechat'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("message", "new", "--text", "x", "--to", "党工委", "--fallback", "sms")
    assert bad.exit_code == 1 and "--fallback sms needs --channel" in bad.stderr


def test_a_daily_series_on_channels(ws, cli, monkeypatch):
    from tests.channels.helpers import build_org

    monkeypatch.setenv("BROADCAST_NOW", "2026-12-07T06:00")
    build_org(ws, BRANCHES)
    series = ws.settings.data_dir / "早餐.txt"
    series.write_text("第一天。\n第二天。\n", encoding="utf-8")
    r = cli("schedule", "daily", "--series", str(series), "--to", "党工委", "--time", "07:30",
            "--channel", "wecom-app,sms", "--fallback", "sms", "--json")
    assert r.exit_code == 0, r
    ids = [m["id"] for m in r.json()["messages"]]
    shown = [cli("message", "show", str(i), "--json").json() for i in ids]
    assert [(m["channels"], m["fallback"]) for m in shown] == [("wecom-app,sms", "sms")] * 2
    bad = cli("schedule", "daily", "--series", str(series), "--to", "党工委", "--time", "07:30", "--channel", "fax")
    assert bad.exit_code == 1 and "unknown channel 'fax'" in bad.stderr


def test_show_and_estimate_count_sms_only_for_the_people_who_get_one(ws, cli, monkeypatch):
    for k, v in {"BROADCAST_PRICE_SIMULATOR": "0.05", "BROADCAST_GATEWAY": "simulator"}.items():
        monkeypatch.setenv(k, v)
    build_org(ws, BRANCHES)  # 张三 and 王五 on WeCom, 李四 SMS only
    r = cli("message", "new", "--text", "今日精神早餐。", "--to", "党工委", "--channel", "wecom-app,sms", "--json")
    assert r.exit_code == 0, r
    shown = cli("message", "show", "1", "--json").json()
    assert shown["audience"] == 3 and shown["billable_parts"] == 1
    assert shown["cost"]["estimate"]["billable_sms"] == 1 and shown["cost"]["estimate"]["cost"] == "0.05"

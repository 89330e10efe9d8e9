"""A message on several channels, end to end through the dispatcher against local fakes: each person
once, on the first channel where they have an address; ``--fallback sms`` gives exactly those the
channel refused an SMS instead, never both; a chat post stands for its group; opt-outs per channel."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from broadcast.db.channel_models import DeliveryPerson
from broadcast.db.dispatch_models import DeliveryAttempt
from broadcast.db.models import Member
from broadcast.dispatch import service
from broadcast.messages.store import create_message
from broadcast.workspace import Workspace
from tests.channels.helpers import (
    AGENT,
    CORP,
    CORP_SECRET,
    build_org,
    by_phone,
    opt_out,
    phone,
    set_robot,
    wecom_app_env,
)
from tests.gateways.fake_robots import FakeWeComRobot
from tests.gateways.fake_wecom_app import FakeWeComApp

SENT = ("accepted", "delivered")
ROBOT_KEY = "chan-wecom-robot-key-8a1b"
BRANCHES = {
    "一支部": [("张三", 1, "zhangsan", ""), ("李四", 2, "lisi", ""), ("王五", 3, "", "")],
    "二支部": [("赵六", 4, "zhaoliu", ""), ("孙七", 5, "gone-user", ""), ("周八", 6, "", "")],
}


@pytest.fixture
def org(ws, monkeypatch):
    for k, v in {"BROADCAST_SIGNATURE": "【城南新区】", "BROADCAST_SIMULATOR_LATENCY_MS": "0",
                 "BROADCAST_SIMULATOR_FAILURE_RATE": "0", "BROADCAST_REQUIRE_APPROVAL": "false", "BROADCAST_QUIET_HOURS": "",
                 "BROADCAST_GATEWAY": "simulator"}.items():
        monkeypatch.setenv(k, v)
    build_org(ws, BRANCHES)
    return ws


def fresh(monkeypatch, env: dict[str, str]) -> Workspace:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Workspace.open()


def send(ws: Workspace, channels: str, fallback: str | None = None, text: str = "{name}同志：今日精神早餐。"):
    created = create_message(ws, text=text, groups=["党工委"], channels=channels, fallback=fallback)
    return created.id, service.run_once(ws)


@pytest.mark.both_stores
def test_wecom_first_then_sms_each_person_once_and_refused_ones_fall_back(org, monkeypatch):
    app = FakeWeComApp(CORP, CORP_SECRET, AGENT, {"zhangsan", "lisi", "zhaoliu"})  # gone-user is not a member
    with app.running() as url:
        ws = fresh(monkeypatch, wecom_app_env(url))
        mid, report = send(ws, "wecom-app,sms", "sms")
    rows = by_phone(ws)
    assert report.completed == [mid] and report.fell_back == 1
    assert report.channels[mid] == {"wecom-app": 4, "sms": 2}
    assert sorted((u, t) for u, t, _ in app.delivered) == [
        ("lisi", "【城南新区】李四同志：今日精神早餐。"), ("zhangsan", "【城南新区】张三同志：今日精神早餐。"),
        ("zhaoliu", "【城南新区】赵六同志：今日精神早餐。")]
    assert {p: r["channel"] for p, r in rows.items()} == {
        phone(1): "wecom-app", phone(2): "wecom-app", phone(4): "wecom-app", phone(5): "sms", phone(3): "sms",
        phone(6): "sms"}
    assert all(r["status"] in SENT for r in rows.values())
    # the refused one: one row, moved; its WeCom attempt kept beside the SMS one
    moved = rows[phone(5)]
    assert moved["gateway"] == "simulator" and moved["address"] == "" and moved["text"] == "【城南新区】孙七同志：今日精神早餐。"
    a = DeliveryAttempt.__table__
    with ws.engine.connect() as conn:
        tries = conn.execute(sa.select(a.c.gateway, a.c.outcome).where(a.c.delivery_id == moved["id"])
                             .order_by(a.c.id)).all()
    assert [tuple(t) for t in tries] == [("wecom-app", "permanent"), ("simulator", "accepted")]


def test_without_fallback_a_refused_person_fails_with_the_channel_reason(org, monkeypatch):
    app = FakeWeComApp(CORP, CORP_SECRET, AGENT, {"zhangsan", "lisi", "zhaoliu"})
    with app.running() as url:
        ws = fresh(monkeypatch, wecom_app_env(url))
        mid, report = send(ws, "wecom-app,sms")
    rows = by_phone(ws)
    assert report.fell_back == 0
    assert (rows[phone(5)]["channel"], rows[phone(5)]["status"]) == ("wecom-app", "failed")
    assert len(app.delivered) == 3 and len(rows) == 6


def test_a_channel_that_is_not_configured_sends_by_sms_with_fallback_and_pauses_without(org, monkeypatch):
    ws = Workspace.open()
    mid, report = send(ws, "wecom-app,sms", "sms")
    rows = by_phone(ws)
    assert report.completed == [mid] and {r["channel"] for r in rows.values()} == {"sms"} and len(rows) == 6
    assert all(r["status"] in SENT for r in rows.values())
    mid2, report2 = send(ws, "wecom-app,sms")
    assert mid2 in report2.paused and "wecom-app" in report2.paused[mid2]


def test_channel_optouts_sms_optout_is_not_a_wecom_optout(org, monkeypatch):
    opt_out(org, 1, "sms")  # 张三 stopped SMS: still on WeCom
    opt_out(org, 2, "wecom")  # 李四 stopped WeCom: gets SMS
    opt_out(org, 3, "sms", all_channels=True)  # 王五: nothing at all
    app = FakeWeComApp(CORP, CORP_SECRET, AGENT, {"zhangsan", "lisi", "zhaoliu", "gone-user"})
    with app.running() as url:
        ws = fresh(monkeypatch, wecom_app_env(url))
        mid, report = send(ws, "wecom-app,sms", "sms")
    rows = by_phone(ws)
    assert {p: r["channel"] for p, r in rows.items()} == {
        phone(1): "wecom-app", phone(2): "sms", phone(4): "wecom-app", phone(5): "wecom-app", phone(6): "sms"}
    assert report.optout_skipped == {mid: 1}
    assert sorted(u for u, _, _ in app.delivered) == ["gone-user", "zhangsan", "zhaoliu"]


def test_an_sms_optout_is_not_sent_by_fallback(org, monkeypatch):
    opt_out(org, 5, "sms")
    app = FakeWeComApp(CORP, CORP_SECRET, AGENT, {"zhangsan", "lisi", "zhaoliu"})
    with app.running() as url:
        ws = fresh(monkeypatch, wecom_app_env(url))
        mid, report = send(ws, "wecom-app,sms", "sms")
    row = by_phone(ws)[phone(5)]
    assert (row["channel"], row["status"]) == ("wecom-app", "failed") and report.fell_back == 0


@pytest.mark.both_stores
def test_group_robots_one_post_per_chat_standing_for_its_members_and_the_rest_by_sms(org, monkeypatch):
    robot = FakeWeComRobot({ROBOT_KEY: ""})
    set_robot(org, "一支部", "wecom", f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={ROBOT_KEY}")
    with robot.running() as url:
        ws = fresh(monkeypatch, {"BROADCAST_WECOM_ROBOT_ENDPOINT": url})
        mid, report = send(ws, "group-robots,sms", "sms", text="今日精神早餐：{group}。")
    rows = by_phone(ws)
    assert report.completed == [mid]
    assert robot.texts() == ["【城南新区】今日精神早餐：一支部。"]
    post = next(r for r in rows.values() if r["channel"] == "wecom-robot")
    assert post["member_id"] is None and post["address"].startswith("group:") and post["status"] == "accepted"
    p = DeliveryPerson.__table__
    with ws.engine.connect() as conn:
        people = sorted(conn.execute(sa.select(p.c.phone).where(p.c.delivery_id == post["id"])).scalars())
    assert people == [phone(1), phone(2), phone(3)]
    assert sorted(ph for ph, r in rows.items() if r["channel"] == "sms") == [phone(4), phone(5), phone(6)]


def test_a_failed_post_gives_its_people_sms(org, monkeypatch):
    robot = FakeWeComRobot({"another-key": ""})  # the group's key is unknown to the provider: refused
    set_robot(org, "一支部", "wecom", f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={ROBOT_KEY}")
    with robot.running() as url:
        ws = fresh(monkeypatch, {"BROADCAST_WECOM_ROBOT_ENDPOINT": url})
        mid, report = send(ws, "group-robots", "sms", text="今日精神早餐：{name}{group}。")
    rows = by_phone(ws)
    post = next(r for r in rows.values() if r["channel"] == "wecom-robot")
    assert post["status"] == "failed" and post["error_code"] == "fallback_sms"
    sms = {ph: r for ph, r in rows.items() if r["channel"] == "sms"}
    assert sorted(sms) == [phone(1), phone(2), phone(3)]
    assert sms[phone(1)]["text"] == "【城南新区】今日精神早餐：张三一支部。" and sms[phone(1)]["status"] in SENT
    assert report.completed == [mid]


def test_email_then_sms_against_a_real_smtp_server(org, monkeypatch):
    from tests.gateways.fake_smtp import MailServer, smtp_server

    m = Member.__table__
    with org.engine.begin() as conn:
        conn.execute(m.update().where(m.c.phone == phone(1)).values(email="zhangsan@chengnan.example.org"))
        conn.execute(m.update().where(m.c.phone == phone(2)).values(email="gone@chengnan.example.org"))
    mail = MailServer(refuse_rcpt={"gone@chengnan.example.org": "550 5.1.1 No such user"})
    with smtp_server(mail) as port:
        ws = fresh(monkeypatch, {"BROADCAST_EMAIL_HOST": "127.0.0.1", "BROADCAST_EMAIL_PORT": str(port),
                                 "BROADCAST_EMAIL_SECURITY": "none", "BROADCAST_EMAIL_SUBJECT": "精神早餐",
                                 "BROADCAST_EMAIL_FROM_ADDRESS": "城南新区 <notice@chengnan.example.org>"})
        mid, report = send(ws, "email,sms", "sms")
    assert [(r.rcpt_to, r.message["Subject"], r.text) for r in mail.received] == [
        (["zhangsan@chengnan.example.org"], "精神早餐", "【城南新区】张三同志：今日精神早餐。")]
    rows = by_phone(ws)
    assert rows[phone(1)]["channel"] == "email" and rows[phone(2)]["channel"] == "sms"
    assert {p for p, r in rows.items() if r["channel"] == "sms"} == {phone(i) for i in (2, 3, 4, 5, 6)}
    assert report.completed == [mid] and report.fell_back == 1


def test_purge_erases_channel_addresses_and_the_people_of_a_post(org, monkeypatch):
    import datetime as dt

    from broadcast.audit.purge import purge

    robot = FakeWeComRobot({ROBOT_KEY: ""})
    set_robot(org, "一支部", "wecom", f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={ROBOT_KEY}")
    app = FakeWeComApp(CORP, CORP_SECRET, AGENT, {"zhaoliu"})
    with robot.running() as url, app.running() as app_url:
        ws = fresh(monkeypatch, {"BROADCAST_WECOM_ROBOT_ENDPOINT": url, **wecom_app_env(app_url)})
        send(ws, "group-robots,wecom-app,sms")
    before = by_phone(ws)
    assert any(r["address"] == "zhaoliu" for r in before.values()), [(r["channel"], r["address"], r["status"]) for r in before.values()]
    from broadcast import clock

    # the day after today where the office is (purge's days are local ones: at 00:10 in Shanghai the
    # machine's UTC date is still yesterday's)
    done = purge(ws, clock.local(clock.now(ws.settings), ws.settings.timezone).date() + dt.timedelta(days=1))
    assert done.deliveries == len(before)
    after = by_phone(ws)
    assert all(p.startswith("purged-") and r["address"] == "" and r["text"] == "" for p, r in after.items())
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DeliveryPerson.__table__)).scalar_one() == 0

"""Group-chat robots for the committee's 65 branches: one post into each branch's chat, each robot
within its 20 a minute, and the send finishes; branches whose chats share one robot share its 20 a
minute (the 21st post waits for the robot's next minute, it is never refused by the provider)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from broadcast.dispatch import service
from broadcast.messages.store import create_message
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member
from broadcast.workspace import Workspace
from tests.channels.helpers import by_phone, phone, set_robot
from tests.gateways.fake_robots import FakeWeComRobot

URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={}"


def branches(ws, n: int) -> list[str]:
    add_group(ws, "党工委")
    names = [f"第{i:02d}支部" for i in range(1, n + 1)]
    for i, name in enumerate(names):
        add_group(ws, name, parent="党工委")
        for j in range(2):
            add_member(ws, f"党员{i}-{j}", phone(100 * i + j), [name])
    return names


@pytest.fixture
def env(ws, monkeypatch):
    for k, v in {"BROADCAST_SIGNATURE": "【城南新区】", "BROADCAST_REQUIRE_APPROVAL": "false", "BROADCAST_QUIET_HOURS": "",
                 "BROADCAST_GATEWAY": "simulator", "BROADCAST_SIMULATOR_LATENCY_MS": "0",
                 "BROADCAST_WECOM_ROBOT_MAX_WAIT_S": "1"}.items():
        monkeypatch.setenv(k, v)
    return ws


def test_65_branch_chats_one_post_each_within_their_robots_limits(env, monkeypatch):
    names = branches(env, 65)
    keys = {name: f"robot-key-{i:02d}-f00d" for i, name in enumerate(names)}
    robot = FakeWeComRobot({k: "" for k in keys.values()})
    for name, key in keys.items():
        set_robot(env, name, "wecom", URL.format(key))
    with robot.running() as url:
        monkeypatch.setenv("BROADCAST_WECOM_ROBOT_ENDPOINT", url)
        ws = Workspace.open()
        mid = create_message(ws, text="今日精神早餐（{group}）：不忘初心。", groups=["党工委"], channels="group-robots").id
        report = service.run_once(ws)
    assert report.completed == [mid]
    assert "45009" not in robot.answers and len(robot.posts) == 65
    assert sorted(p.robot for p in robot.posts) == sorted(keys.values())  # one post per chat
    assert {p.text for p in robot.posts if p.robot == keys["第07支部"]} == {"【城南新区】今日精神早餐（第07支部）：不忘初心。"}
    rows = by_phone(ws)
    assert len(rows) == 65 and all(r["status"] == "accepted" and r["channel"] == "wecom-robot" for r in rows.values())
    with ws.engine.connect() as conn:
        linked = conn.execute(sa.text("SELECT count(*) FROM delivery_people")).scalar_one()
    assert linked == 130


def test_chats_sharing_one_robot_share_its_20_a_minute(env, monkeypatch):
    names = branches(env, 22)
    robot = FakeWeComRobot({"shared-robot-key-beef": ""})
    for name in names:
        set_robot(env, name, "wecom", URL.format("shared-robot-key-beef"))
    with robot.running() as url:
        monkeypatch.setenv("BROADCAST_WECOM_ROBOT_ENDPOINT", url)
        ws = Workspace.open()
        mid = create_message(ws, text="今日精神早餐（{group}）。", groups=["党工委"], channels="group-robots").id
        report = service.run_once(ws)
    assert "45009" not in robot.answers  # never over the provider's limit
    assert len(robot.posts) == 20 and mid not in report.completed
    waiting = [r for r in by_phone(ws).values() if r["status"] == "retry_wait"]
    assert len(waiting) == 2 and all(r["error_code"] == "robot_busy" for r in waiting)

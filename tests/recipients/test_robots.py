"""A group chat's robots: URLs checked per platform (the same keys the robot gateways take out of
them), one per platform per group, keys and secrets never in a repr, a listing or the audit trail."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from broadcast.errors import InputError, NotFoundError
from broadcast.gateways.dingtalk import extract_token
from broadcast.gateways.feishu import extract_hook
from broadcast.gateways.wecom import extract_key
from broadcast.recipients.groups import add_group, remove_group, show_group
from broadcast.recipients.robots import (
    GroupRobotConfig,
    group_robots,
    list_robots,
    mask_url,
    remove_robot,
    robot_key,
    set_robot,
)

pytestmark = pytest.mark.both_stores

WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7f5e-4bc4-97a0-0ec2sifa1234"
DING = "https://oapi.dingtalk.com/robot/send?access_token=3ad9c1f4e5b6a7d8c9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0abcd"
FEISHU = "https://open.feishu.cn/open-apis/bot/v2/hook/6f8c1e2a-3b4d-4e5f-8a9b-0c1d2e3f9876"
SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
EXTRACT = {"wecom": extract_key, "dingtalk": extract_token, "feishu": extract_hook}

SAMPLES = [
    ("wecom", WECOM), ("wecom", "http://127.0.0.1:8765/cgi-bin/webhook/send?key=abcdefgh"),
    ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=short"),
    ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=has_underscore_"),
    ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=" + "a" * 129),
    ("dingtalk", DING), ("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=abc_def-123"),
    ("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=abc.def.123"),
    ("feishu", FEISHU), ("feishu", "http://localhost:9000/open-apis/bot/v2/hook/abcdefgh"),
    ("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/abc_defgh"),
]


@pytest.mark.parametrize("platform,url", SAMPLES)
def test_the_key_is_the_one_the_gateway_takes(platform, url):
    """This module cannot call the gateways (it is below them): it must agree with them."""
    expected = EXTRACT[platform](url)
    try:
        assert robot_key(platform, url) == expected
    except InputError:
        assert expected is None


@pytest.mark.parametrize("platform,url,why", [
    ("wecom", "qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcdefgh", "not a webhook URL"),
    ("wecom", "http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcdefgh", "must be https://"),
    ("wecom", "https://oapi.dingtalk.com/robot/send?access_token=abcdefgh", "not a wecom robot's webhook"),
    ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?k=abcdefgh", "its key= is missing"),
    ("dingtalk", WECOM, "not a dingtalk robot's webhook"),
    ("dingtalk", "https://oapi.dingtalk.com/robot/send", "its access_token= is missing"),
    ("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/", "the part after /hook/"),
    ("feishu", "https://open.feishu.cn/open-apis/bot/v2/other/abcdefgh", "not a feishu robot's webhook"),
])
def test_bad_urls_are_refused_without_echoing_the_key(platform, url, why):
    with pytest.raises(InputError, match=why) as exc:
        robot_key(platform, url)
    assert "abcdefgh" not in str(exc.value)


def test_masked_urls_show_at_most_the_last_4_characters():
    assert mask_url("wecom", WECOM) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=****1234"
    assert mask_url("dingtalk", DING + "&timestamp=1&sign=x") == \
        "https://oapi.dingtalk.com/robot/send?access_token=****abcd"
    assert mask_url("feishu", FEISHU) == "https://open.feishu.cn/open-apis/bot/v2/hook/****9876"
    assert mask_url("wecom", "https://user:pw@127.0.0.1:80/cgi-bin/webhook/send?key=abcdefgh") == \
        "https://127.0.0.1:80/cgi-bin/webhook/send?key=****efgh"


def test_set_replace_list_remove(ws):
    add_group(ws, "城南社区党支部")
    add_group(ws, "青石村党支部")
    assert set_robot(ws, "城南社区党支部", "wecom", WECOM).replaced is False
    set_robot(ws, "城南社区党支部", "dingtalk", DING, SECRET)
    set_robot(ws, "青石村党支部", "feishu", FEISHU)
    info = set_robot(ws, "城南社区党支部", "wecom", WECOM.replace("1234", "5678"))
    assert info.replaced and info.url.endswith("key=****5678")
    assert [(r.platform, r.secret) for r in list_robots(ws, "城南社区党支部")] == [("wecom", False), ("dingtalk", True)]
    with ws.engine.connect() as conn:
        configs = group_robots(conn)
    assert [(c.group_name, c.platform, c.secret) for c in configs] == [
        ("城南社区党支部", "wecom", ""), ("城南社区党支部", "dingtalk", SECRET), ("青石村党支部", "feishu", "")]
    assert configs[1].url == DING
    assert "SEC0" not in repr(configs) and "access_token" not in repr(configs) and "6f8c1e2a" not in repr(configs)
    assert isinstance(configs[0], GroupRobotConfig) and configs[0].group_id > 0
    with pytest.raises(AttributeError):
        configs[0].secret = "x"  # type: ignore[misc]
    remove_robot(ws, "城南社区党支部", "wecom")
    with pytest.raises(NotFoundError, match="has no wecom robot"):
        remove_robot(ws, "城南社区党支部", "wecom")
    assert [r["platform"] for r in show_group(ws, "城南社区党支部").robots] == ["dingtalk"]
    assert show_group(ws, "城南社区党支部").robots[0]["secret"] == "set"
    remove_group(ws, "青石村党支部")
    with ws.engine.connect() as conn:
        assert [c.group_name for c in group_robots(conn)] == ["城南社区党支部"]


def test_bad_input_writes_nothing(ws):
    add_group(ws, "城南社区党支部")
    with pytest.raises(InputError, match="a WeCom robot has no secret"):
        set_robot(ws, "城南社区党支部", "wecom", WECOM, "SECabc")
    with pytest.raises(InputError, match="--secret: not a dingtalk signing secret"):
        set_robot(ws, "城南社区党支部", "dingtalk", DING, "has space")
    with pytest.raises(InputError, match="not a robot platform"):
        set_robot(ws, "城南社区党支部", "slack", WECOM)
    with pytest.raises(NotFoundError, match="no group named"):
        set_robot(ws, "没有的支部", "wecom", WECOM)
    with ws.engine.connect() as conn:
        assert group_robots(conn) == []


def test_audit_names_the_platform_and_key_tail_never_the_key_or_secret(ws):
    add_group(ws, "城南社区党支部")
    set_robot(ws, "城南社区党支部", "dingtalk", DING, SECRET)
    remove_robot(ws, "城南社区党支部", "dingtalk")
    with ws.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, details FROM audit_log WHERE action LIKE 'group.robot%' ORDER BY id")).all()
    assert [a for a, _ in rows] == ["group.robot", "group.robot.remove"]
    text = " ".join(str(d) for _, d in rows)
    assert "****abcd" in text and "dingtalk" in text
    assert SECRET not in text and "3ad9c1f4" not in text and "SEC0" not in text

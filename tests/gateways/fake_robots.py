"""Local fakes of the group-chat robots: a WeCom group robot, a DingTalk custom robot and a Feishu
custom bot, each a real HTTP server on 127.0.0.1 (``FakeProvider.running()``, or behind an
``httpx.MockTransport`` with ``transport()``).

Each checks what the provider checks, computed here independently of ``broadcast.gateways.signing``
(plain ``hmac``/``hashlib``): the key, DingTalk's ``timestamp``/``sign`` in the query, Feishu's in the
body, both within an hour of the fake's clock; enforces the documented limits per robot over a
sliding window on the fake's clock (WeCom 20 a minute → 45009; DingTalk 20 a minute → 130101 and
ten minutes of 130101; Feishu 5 a second and 100 a minute → 11232); and answers the documented
refusals (a missing keyword, an IP outside the allowlist, a bad signature, an unknown key, a bad
body). ``posts`` holds what each robot posted into its chat; ``answers`` every code answered.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.gateways.fakes import FakeProvider


@dataclass
class Post:
    robot: str  # the key / token / hook id
    body: dict[str, Any]
    at: float  # the fake's clock

    @property
    def text(self) -> str:
        body = self.body
        if "msg_type" in body:
            return str(body["content"]["text"])
        return str(body[body["msgtype"]]["content"])


def _answer(data: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data, ensure_ascii=False).encode()


class FakeRobots(FakeProvider):
    """What the three fakes share: robots (key -> signing secret, "" for none), the clock, the
    windows, keywords, the allowlist and what was posted."""

    name = "robots"
    windows: tuple[tuple[int, float], ...] = ()

    def __init__(self, robots: dict[str, str], clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.robots = dict(robots)
        self.clock = clock
        self.posts: list[Post] = []
        self.answers: list[str] = []
        self.keywords: set[str] = set()  # a post must contain one (when set)
        self.ip_refused = False  # this server's IP is outside every robot's allowlist
        self.seen: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.fail_status: int | None = None

    def over_limit(self, robot: str, now: float) -> bool:
        """Count this request; True when it is over a window (it is refused, not posted)."""
        seen = self.seen[robot]
        longest = max(per_s for _, per_s in self.windows)
        while seen and seen[0] <= now - longest:
            seen.popleft()
        over = any(sum(1 for t in seen if t > now - per_s) >= count for count, per_s in self.windows)
        if not over:
            seen.append(now)
        return over

    def reply(self, code: str, data: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], bytes]:
        self.answers.append(code)  # serve() runs under the fake's lock
        return _answer(data, status)

    def record(self, robot: str, body: dict[str, Any], now: float) -> None:
        self.posts.append(Post(robot, body, now))

    def texts(self, robot: str | None = None) -> list[str]:
        return [p.text for p in self.posts if robot is None or p.robot == robot]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.fail_status is not None:
            return self.fail_status, {}, b"down"
        parts = urlsplit(path)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        with self._lock:
            return self.serve(parts.path, dict(parse_qsl(parts.query)), data if isinstance(data, dict) else None)

    def serve(self, path: str, query: dict[str, str], body: dict[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


class FakeWeComRobot(FakeRobots):
    """``/cgi-bin/webhook/send?key=KEY``: 93000 for an unknown key, 45009 over 20 a minute,
    40008 an unknown msgtype, 44004 empty content, 40058 text over 2,048 bytes."""

    name = "wecom-robot"
    windows = ((20, 60.0),)

    def serve(self, path: str, query: dict[str, str], body: dict[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
        key = query.get("key", "")
        if path != "/cgi-bin/webhook/send" or key not in self.robots:
            return self.reply("93000", {"errcode": 93000, "errmsg": "invalid webhook url, hint: [fake]"})
        if body is None or body.get("msgtype") not in ("text", "markdown"):
            return self.reply("40008", {"errcode": 40008, "errmsg": "invalid message type"})
        content = str(body.get(body["msgtype"], {}).get("content", ""))
        if not content:
            return self.reply("44004", {"errcode": 44004, "errmsg": "empty content"})
        limit = 2048 if body["msgtype"] == "text" else 4096
        if len(content.encode()) > limit:
            return self.reply("40058", {"errcode": 40058, "errmsg": f"{body['msgtype']}.content exceed max length {limit}"})
        now = self.clock()
        if self.over_limit(key, now):
            return self.reply("45009", {"errcode": 45009, "errmsg": "api freq out of limit"})
        self.record(key, body, now)
        return self.reply("0", {"errcode": 0, "errmsg": "ok"})


def dingtalk_expected_sign(secret: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)) (the query value, once decoded)."""
    return base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()).decode()


class FakeDingTalk(FakeRobots):
    """``/robot/send?access_token=T[&timestamp&sign]``: 300005 an unknown token, 310000 a bad or
    stale signature, a missing keyword or a refused IP, 130101 over 20 a minute and for ten minutes
    after, 40035 a body it cannot use."""

    name = "dingtalk-robot"
    windows = ((20, 60.0),)

    def __init__(self, robots: dict[str, str], clock: Callable[[], float] = time.time) -> None:
        super().__init__(robots, clock)
        self.blocked_until: dict[str, float] = {}

    def serve(self, path: str, query: dict[str, str], body: dict[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
        token = query.get("access_token", "")
        if path != "/robot/send" or token not in self.robots:
            return self.reply("300005", {"errcode": 300005, "errmsg": "token is not exist"})
        now = self.clock()
        if self.ip_refused:
            return self.reply("310000", {"errcode": 310000, "errmsg": "ip 127.0.0.1 not in whitelist"})
        secret = self.robots[token]
        if secret:
            ts = query.get("timestamp", "")
            if not ts.isdigit() or abs(int(ts) / 1000 - now) > 3600:
                return self.reply("310000", {"errcode": 310000, "errmsg": "invalid timestamp"})
            if not hmac.compare_digest(query.get("sign", ""), dingtalk_expected_sign(secret, ts)):
                return self.reply("310000", {"errcode": 310000, "errmsg": "sign not match"})
        if body is None or body.get("msgtype") != "text" or not str(body.get("text", {}).get("content", "")):
            return self.reply("40035", {"errcode": 40035, "errmsg": "缺少参数 json"})
        content = str(body["text"]["content"])
        if self.keywords and not any(k in content for k in self.keywords):
            return self.reply("310000", {"errcode": 310000, "errmsg": "keywords not in content"})
        if self.blocked_until.get(token, 0) > now:
            return self.reply("130101", {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        if self.over_limit(token, now):
            self.blocked_until[token] = now + 600
            return self.reply("130101", {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        self.record(token, body, now)
        return self.reply("0", {"errcode": 0, "errmsg": "ok"})


def feishu_expected_sign(secret: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(key = timestamp + "\\n" + secret, message = empty))."""
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


class FakeFeishu(FakeRobots):
    """``/open-apis/bot/v2/hook/ID``: 19001 an unknown hook, 19021 a bad or stale signature, 19022
    a refused IP, 19024 a missing keyword, 11232 over 5 a second or 100 a minute, 9499 a bad body
    or one over 20 KB."""

    name = "feishu-robot"
    windows = ((5, 1.0), (100, 60.0))

    def serve(self, path: str, query: dict[str, str], body: dict[str, Any] | None) -> tuple[int, dict[str, str], bytes]:
        hook = path.rpartition("/hook/")[2] if path.startswith("/open-apis/bot/v2/hook/") else ""
        if hook not in self.robots:
            return self.reply("19001", {"code": 19001, "msg": "param invalid: incoming webhook access token invalid", "data": {}})
        if body is None:
            return self.reply("9499", {"code": 9499, "msg": "Bad Request", "data": {}}, 400)
        now = self.clock()
        secret = self.robots[hook]
        if secret:
            ts = str(body.get("timestamp", ""))
            if (not ts.isdigit() or abs(int(ts) - now) > 3600
                    or not hmac.compare_digest(str(body.get("sign", "")), feishu_expected_sign(secret, ts))):
                return self.reply("19021", {"code": 19021, "msg": "sign match fail or timestamp is not within one hour "
                                                                  "from current time", "data": {}})
        if self.ip_refused:
            return self.reply("19022", {"code": 19022, "msg": "Ip Not Allowed", "data": {}})
        if body.get("msg_type") != "text" or not str(body.get("content", {}).get("text", "")) \
                or len(json.dumps(body, ensure_ascii=False).encode()) > 20 * 1024:
            return self.reply("9499", {"code": 9499, "msg": "Bad Request", "data": {}})
        if self.keywords and not any(k in body["content"]["text"] for k in self.keywords):
            return self.reply("19024", {"code": 19024, "msg": "Key Words Not Found", "data": {}})
        if self.over_limit(hook, now):
            return self.reply("11232", {"code": 11232, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]", "data": {}})
        self.record(hook, body, now)
        return self.reply("0", {"code": 0, "msg": "success", "data": {}})

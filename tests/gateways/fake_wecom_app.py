"""A local fake of WeCom's application messages: ``gettoken``, ``message/send`` and ``agent/get`` on
127.0.0.1 (``running()``) or behind an ``httpx.MockTransport`` (``transport()``).

It issues access tokens valid for ``expires_in`` seconds of its clock (``expire_tokens()`` ends them
at once: 42001; ``revoke_tokens()`` makes them unknown: 40014), refuses a wrong corp id (40013),
secret (40001) or agent id (40056), names unknown members in ``invaliduser`` (all unknown: 81013),
answers 45009 to the next ``throttle`` requests, drops silently what a member gets over 30 a
minute (as WeCom does; counted in ``dropped``), and with ``enable_duplicate_check`` drops a request
repeated within its interval (``duplicates``). ``delivered`` holds (userid, text, msgid).
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.gateways.fakes import FakeProvider


class FakeWeComApp(FakeProvider):
    name = "wecom-app"

    def __init__(self, corp_id: str, secret: str, agent_id: int, members: set[str],
                 clock: Callable[[], float] = time.monotonic, expires_in: int = 7200) -> None:
        super().__init__()
        self.corp_id, self.secret, self.agent_id = corp_id, secret, agent_id
        self.members = set(members)
        self.unlicensed: set[str] = set()
        self.clock = clock
        self.expires_in = expires_in
        self.tokens: dict[str, float] = {}  # token -> expires at
        self.token_requests = 0
        self.throttle = 0  # answer 45009 to this many more sends
        self.hang_send_s = 0.0  # take each message/send, then wait this long before answering
        self.delivered: list[tuple[str, str, str]] = []
        self.dropped = 0
        self.duplicates = 0
        self.answers: list[int] = []
        self._per_member: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._recent: dict[str, float] = {}  # request body -> when it was last taken
        self._ids = itertools.count(1)

    def expire_tokens(self) -> None:
        self.tokens = {t: self.clock() - 1 for t in self.tokens}

    def revoke_tokens(self) -> None:
        self.tokens = {}

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.fail_status is not None:
            return self.fail_status, {}, b"down"
        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query))
        with self._lock:
            if parts.path == "/cgi-bin/gettoken":
                return self._gettoken(query)
            refused = self._token_refused(query.get("access_token", ""))
            if refused:
                return self._reply(refused)
            if parts.path == "/cgi-bin/agent/get":
                if query.get("agentid") != str(self.agent_id):
                    return self._reply({"errcode": 40056, "errmsg": "invalid agentid"})
                return self._reply({"errcode": 0, "errmsg": "ok", "agentid": self.agent_id, "name": "通知"})
            if parts.path == "/cgi-bin/message/send" and method == "POST":
                answer = self._send(body)
                if not self.hang_send_s:
                    return answer
        if self.hang_send_s and parts.path == "/cgi-bin/message/send":
            time.sleep(self.hang_send_s)  # outside the lock: the client gives up first (in doubt)
            return answer
        return 404, {}, b"not found"

    def _reply(self, data: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        self.answers.append(int(data["errcode"]))
        return 200, {"Content-Type": "application/json"}, json.dumps(data, ensure_ascii=False).encode()

    def _gettoken(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.token_requests += 1
        if query.get("corpid") != self.corp_id:
            return self._reply({"errcode": 40013, "errmsg": "invalid corpid"})
        if query.get("corpsecret") != self.secret:
            return self._reply({"errcode": 40001, "errmsg": "invalid credential"})
        token = f"tok-{next(self._ids)}"
        self.tokens[token] = self.clock() + self.expires_in
        return self._reply({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.expires_in})

    def _token_refused(self, token: str) -> dict[str, Any] | None:
        if token not in self.tokens:
            return {"errcode": 40014, "errmsg": "invalid access_token"}
        if self.tokens[token] <= self.clock():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return None

    def _send(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            body = json.loads(raw)
        except ValueError:
            return self._reply({"errcode": 40035, "errmsg": "invalid json"})
        if body.get("agentid") != self.agent_id:
            return self._reply({"errcode": 40056, "errmsg": "invalid agentid"})
        text = str(body.get("text", {}).get("content", ""))
        if body.get("msgtype") != "text" or not text:
            return self._reply({"errcode": 44004, "errmsg": "empty content"})
        if self.throttle > 0:
            self.throttle -= 1
            return self._reply({"errcode": 45009, "errmsg": "api freq out of limit"})
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        invalid = [u for u in users if u not in self.members]
        unlicensed = [u for u in users if u in self.unlicensed and u not in invalid]
        ok = [u for u in users if u not in invalid and u not in unlicensed]
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid),
                                  "unlicenseduser": "|".join(unlicensed)}
        if not ok:
            return self._reply({**answer, "errcode": 81013, "errmsg": "user & party & tag all invalid"})
        msgid = f"msg-{next(self._ids)}"
        answer["msgid"] = msgid
        now = self.clock()
        key = json.dumps(body, sort_keys=True, ensure_ascii=False)
        if body.get("enable_duplicate_check") and self._recent.get(key, -1e18) > now - int(body.get("duplicate_check_interval", 1800)):
            self.duplicates += 1
            return self._reply(answer)
        self._recent[key] = now
        for user in ok:
            seen = self._per_member[user]
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= 30:
                self.dropped += 1
                continue
            seen.append(now)
            self.delivered.append((user, text, msgid))
        return self._reply(answer)

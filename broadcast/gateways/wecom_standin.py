"""A stand-in for WeCom's application-message API on 127.0.0.1, for the demo: the real ``wecom-app``
gateway talks to it over HTTP as it would to ``qyapi.weixin.qq.com`` (as the simulator stands in for an
SMS provider). It issues a token for the corp id and secret it was given, and takes
``message/send`` for the userids it knows, naming the others in ``invaliduser`` (people who left
the organisation's WeCom: the engine sends them an SMS instead where the message says so).

    with WeComStandIn("ww-demo", "secret", 1000002, known_userids) as standin:
        ... BROADCAST_WECOM_APP_ENDPOINT = standin.url ...
    standin.received  # [(userid, text)]
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class WeComStandIn:
    def __init__(self, corp_id: str, secret: str, agent_id: int, users: set[str]) -> None:
        self.corp_id, self.secret, self.agent_id, self.users = corp_id, secret, agent_id, set(users)
        self.token = secrets.token_hex(16)
        self.received: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str, body: bytes) -> dict[str, Any]:
        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query))
        if parts.path == "/cgi-bin/gettoken":
            if query.get("corpid") != self.corp_id or query.get("corpsecret") != self.secret:
                return {"errcode": 40001, "errmsg": "invalid credential"}
            return {"errcode": 0, "errmsg": "ok", "access_token": self.token, "expires_in": 7200}
        if parts.path != "/cgi-bin/message/send" or query.get("access_token") != self.token:
            return {"errcode": 40014, "errmsg": "invalid access_token"}
        try:
            data = json.loads(body)
        except ValueError:
            return {"errcode": 40035, "errmsg": "invalid json"}
        if data.get("agentid") != self.agent_id:
            return {"errcode": 40056, "errmsg": "invalid agentid"}
        users = [u for u in str(data.get("touser", "")).split("|") if u]
        known = [u for u in users if u in self.users]
        unknown = [u for u in users if u not in self.users]
        text = str(data.get("text", {}).get("content", ""))
        with self._lock:
            self.received += [(u, text) for u in known]
        code = 0 if known else 81013
        return {"errcode": code, "errmsg": "ok" if known else "user & party & tag all invalid",
                "invaliduser": "|".join(unknown), "msgid": secrets.token_hex(8) if known else ""}

    def __enter__(self) -> WeComStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as WeCom's own servers
            disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stall

            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                out = json.dumps(standin.answer(self.path, self.rfile.read(length) if length else b"")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

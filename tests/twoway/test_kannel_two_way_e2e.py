"""Two-way end to end against a real Kannel (bearerbox + smsbox + fakesmsc), ``broadcast receipts
serve`` in its own process behind a proxy that loses one answer:

1. message 1 goes to the three members of 一支部 through Kannel (``broadcast run``);
2. fakesmsc originates two replies on a second fake SMSC link: 三 replies "TD", 二 "路灯不亮"; the
   proxy forwards 二's reply to broadcast but answers smsbox 503, so smsbox sends it again (same
   Kannel message id): it is stored once;
3. message 2: 三 is left out (the run says so), the others get it; fakesmsc saw each text exactly
   once per person; 二's reply is in the inbox, matched to the member, the branch and message 1.

Skipped, with the reason, where Kannel is absent (``apt-get install -y kannel kannel-extras``).
"""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote_from_bytes

import httpx
import pytest
import sqlalchemy as sa

from broadcast.gateways import registry
from broadcast.gateways.replies import KANNEL_GET_URL
from tests.helpers.kannel import FAKESMSC, kannel, received, skip_without_kannel, wait_for
from tests.helpers.serve import free_port, serve_cli

pytestmark = pytest.mark.slow

SECRET = "two-way-secret"
SENDER = "10690"
PEOPLE = [("一", "13900000001"), ("二", "13900000002"), ("三", "13900000003")]


@contextlib.contextmanager
def losing_proxy(target: str) -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """Forwards GETs to ``target``; the first call for each Kannel message id whose text is not
    "TD" gets broadcast's answer thrown away and 503 instead (an answer lost on the way back)."""
    seen: set[str] = set()
    calls: list[tuple[str, int]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = httpx.get(target + self.path, timeout=10)
            query = parse_qs(self.path.partition("?")[2])
            mid = query.get("id", [""])[0]
            lose = mid not in seen and query.get("text", [""])[0] != "TD"
            seen.add(mid)
            code = 503 if lose else answer.status_code
            calls.append((mid, code))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], calls
    finally:
        server.shutdown()
        server.server_close()


def originate(tmp: Path, port: int, phone: str, text: str, logs: list[Path], got: Callable[[], bool]) -> None:
    """One MO from ``phone`` through a fakesmsc of its own on the MO link; stopped once it is taken."""
    out = tmp / f"mo-{phone}.out"
    data = quote_from_bytes(text.encode("utf-16-be"), safe="")
    with out.open("wb") as f:
        proc = subprocess.Popen([FAKESMSC, "-H", "127.0.0.1", "-r", str(port), "-m", "1",
                                 f"{phone} {SENDER} ucs2 {data}"], stdout=f, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            wait_for(f"the reply from {phone}", got, [*logs, out], 30)
        finally:
            proc.terminate()
            proc.wait(15)


def test_replies_through_real_kannel_opt_out_and_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       cli: Callable[..., object], ws: object) -> None:
    skip_without_kannel()
    monkeypatch.setitem(registry.BUILTINS, "kannel", "broadcast.gateways.kannel:KannelGateway")
    engine: sa.Engine = ws.engine  # type: ignore[attr-defined]
    for key, value in {"BROADCAST_REQUIRE_APPROVAL": "false", "BROADCAST_QUIET_HOURS": "",
                       "BROADCAST_RECEIPTS_SECRET": SECRET}.items():
        monkeypatch.setenv(key, value)

    def count(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())

    mo_port = free_port()
    with serve_cli(tmp_path / "receipts.log") as receipts, losing_proxy(receipts) as (proxy_port, calls):
        mo_link = f"""
group = smsc
smsc = fake
smsc-id = fake-mo
allowed-smsc-id = mo-only
host = 127.0.0.1
port = {mo_port}
connect-allow-ip = 127.0.0.1

group = sms-service
keyword = default
catch-all = true
max-messages = 0
omit-empty = true
get-url = "http://127.0.0.1:{proxy_port}/{SECRET}/kannel-mo?{KANNEL_GET_URL}"
"""
        with kannel(tmp_path, extra=mo_link, smsbox_extra="http-request-retry = 3\nhttp-queue-delay = 1\n") as (
                sendsms, fake_out, logs):
            for key, value in {"BROADCAST_GATEWAY": "kannel", "BROADCAST_KANNEL_URL": sendsms,
                               "BROADCAST_KANNEL_USERNAME": "broadcast", "BROADCAST_KANNEL_PASSWORD": "kannel-pw",
                               "BROADCAST_KANNEL_SENDER": SENDER,
                               "BROADCAST_RECEIPTS_URL": f"{receipts}/{SECRET}"}.items():
                monkeypatch.setenv(key, value)
            assert cli("group", "add", "一支部").exit_code == 0  # type: ignore[attr-defined]
            for name, phone in PEOPLE:
                assert cli("member", "add", name, phone, "--group", "一支部").exit_code == 0  # type: ignore[attr-defined]
            first = cli("message", "new", "--text", "精神早餐：不忘初心。", "--to", "一支部", "--json").json()["id"]  # type: ignore[attr-defined]
            assert cli("run", "--json").json()["accepted"] == 3  # type: ignore[attr-defined]
            wait_for("message 1 delivered", lambda: count("select count(*) from deliveries where status = 'delivered'") == 3,
                     logs, 30)

            originate(tmp_path, mo_port, "8613900000003", "TD", logs,
                      lambda: count("select count(*) from optouts") == 1)
            originate(tmp_path, mo_port, "8613900000002", "路灯不亮", logs,
                      lambda: len(calls) >= 2 and calls[-1][1] == 200)
            time.sleep(1.5)  # a third call for the same reply, if smsbox made one, would be here by now

            cli("message", "new", "--text", "精神早餐：牢记使命。", "--to", "一支部")
            second = cli("run")
            assert second.exit_code == 0, second  # type: ignore[attr-defined]
            assert "1 opted-out person left out" in second.stdout  # type: ignore[attr-defined]
            wait_for("message 2 delivered", lambda: count("select count(*) from deliveries where status = 'delivered'") == 5,
                     logs, 30)

    got = Counter(received(fake_out))
    assert got == Counter([(f"+86{p}", "精神早餐：不忘初心。") for _, p in PEOPLE]
                          + [(f"+86{p}", "精神早餐：牢记使命。") for _, p in PEOPLE[:2]])
    lamp = [c for c in calls if c[0] != calls[0][0]]
    assert [code for _, code in lamp] == [503, 200] and lamp[0][0] == lamp[1][0]  # one reply, delivered twice
    with engine.connect() as conn:
        inbound = conn.execute(sa.text("select phone, text, kind, message_id from inbound order by id")).all()
        optout = conn.execute(sa.text("select phone, reason, source from optouts")).one()
        inbox = conn.execute(sa.text("select f.phone, f.text, m.name, g.name, f.message_id, f.status from feedback f "
                                     "join members m on m.id = f.member_id join groups g on g.id = f.group_id")).all()
    assert inbound == [("+8613900000003", "TD", "optout", first), ("+8613900000002", "路灯不亮", "feedback", first)]
    assert optout == ("+8613900000003", f"reply: TD to message {first}", "reply")
    assert inbox == [("+8613900000002", "路灯不亮", "二", "一支部", first, "new")]

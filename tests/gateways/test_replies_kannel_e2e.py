"""Replies through a real Kannel: fakesmsc originates a Chinese MO (UCS-2), bearerbox hands it to
smsbox, smsbox calls the ``sms-service`` ``get-url`` of docs/replies.md (``replies.KANNEL_GET_URL``)
on a recorder here; ``parse_kannel_mo`` must read the exact text, the sender and Kannel's message id,
and smsbox must send no reply SMS (``max-messages = 0``).

Skipped, with the reason, where Kannel is absent (``apt-get install -y kannel kannel-extras``).
Every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest

from broadcast.gateways.push import Incoming
from broadcast.gateways.replies import KANNEL_GET_URL, KANNEL_MO
from tests.helpers.kannel import FAKESMSC, kannel, skip_without_kannel, wait_for
from tests.helpers.serve import free_port

skip_without_kannel()
pytestmark = pytest.mark.slow

REPLY = "收到，谢谢！  明天  准时参加 TD"  # two spaces kept: %b, not %a


@contextlib.contextmanager
def recorder() -> Iterator[tuple[int, list[tuple[str, str, dict[str, str], bytes]]]]:
    """A local HTTP server recording every request (method, raw query, headers, body); answers 200, empty."""
    got: list[tuple[str, str, dict[str, str], bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            got.append(("GET", query, dict(self.headers.items()), b""))
            self.send_response(200)
            self.send_header("Content-Type", KANNEL_MO.ack_media_type)
            self.send_header("Content-Length", str(len(KANNEL_MO.ack_body)))
            self.end_headers()
            self.wfile.write(KANNEL_MO.ack_body)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], got
    finally:
        server.shutdown()
        server.server_close()


def mo_link(mo_port: int, recorder_port: int) -> str:
    """A second fake SMSC link for the MOs (no MT is routed to it) and the documented sms-service."""
    return f"""
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
get-url = "http://127.0.0.1:{recorder_port}/s3cret/kannel-mo?{KANNEL_GET_URL}"
"""


def test_a_chinese_reply_through_real_kannel(tmp_path: Path) -> None:
    ucs2 = quote_from_bytes(REPLY.encode("utf-16-be"), safe="")
    mo_port = free_port()
    mo_out = tmp_path / "fakesmsc-mo.out"
    before = datetime.now(UTC).replace(microsecond=0)
    with recorder() as (recorder_port, got), kannel(tmp_path, extra=mo_link(mo_port, recorder_port)) as (
            _, fake_out, logs), mo_out.open("wb") as f:
        proc = subprocess.Popen([FAKESMSC, "-H", "127.0.0.1", "-r", str(mo_port), "-i", "0.2", "-m", "2",
                                 f"8613812345678 1069012345 ucs2 {ucs2}"], stdout=f, stderr=subprocess.STDOUT,
                                cwd=tmp_path)
        try:
            wait_for("two MO calls", lambda: len(got) >= 2, [*logs, mo_out])
            time.sleep(1.0)  # a reply SMS, if smsbox sent one, would reach a fakesmsc by now
        finally:
            proc.terminate()
            proc.wait(15)

    replies = []
    for method, query, headers, body in got:
        replies += KANNEL_MO.parse(Incoming(method, [], headers, body, path="/s3cret/kannel-mo", raw_query=query))
    assert [r.text for r in replies] == [REPLY, REPLY]
    assert {r.phone for r in replies} == {"+8613812345678"} and {r.to for r in replies} == {"1069012345"}
    ids = [r.provider_id for r in replies]
    assert all(i and len(i) == 36 and i.count("-") == 4 for i in ids) and ids[0] != ids[1]  # Kannel's message UUIDs
    assert all(before.timestamp() - 5 <= r.at.timestamp() <= datetime.now(UTC).timestamp() + 5 for r in replies)
    for out in (fake_out, mo_out):  # no reply SMS went back, on either link
        assert "Got message" not in out.read_text(errors="replace")

"""The CMPP test server seen from a raw client built on the codec: the two were written apart, so
agreement here checks both against the spec (login, SUBMIT_RESP, status report, heartbeats, cut)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from broadcast.gateways import cmpp_codec as c
from tests.gateways.cmpp_server import MSG_ID_BASE, CmppServer

SP, SECRET = "901234", "kit-cmpp-secret-1"


async def _read(reader: asyncio.StreamReader) -> tuple[c.Header, bytes]:
    head = c.decode_header(await asyncio.wait_for(reader.readexactly(12), 5))
    return head, await reader.readexactly(head.total_length - 12)


async def _login(port: int, version: int, secret: str = SECRET) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, c.ConnectResp]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(c.encode_connect(1, SP, secret, version, 1021080510))
    head, body = await _read(reader)
    assert head.command_id == c.CONNECT | c.RESP and head.seq == 1
    resp = c.decode_connect_resp(body, version)
    auth = c.authenticator_source(SP, secret, 1021080510)
    if resp.status == 0:
        assert resp.authenticator == c.authenticator_ismg(0, auth, SECRET, version)
    return reader, writer, resp


@pytest.mark.parametrize("version", [0x20, 0x30])
def test_login_submit_and_status_report(version: int) -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}, stats={"13900000002": "UNDELIV"}) as srv:
            reader, writer, resp = await _login(srv.port, version)
            assert resp.status == 0
            sub = c.Submit("13900000002", "你好".encode("utf-16-be"), msg_src=SP, src_id="10657", service_id="SVC")
            writer.write(c.encode_submit(7, sub, version))
            head, body = await _read(reader)
            assert (head.command_id, head.seq) == (c.SUBMIT | c.RESP, 7)
            sr = c.decode_submit_resp(body, version)
            assert sr.result == 0 and sr.msg_id > MSG_ID_BASE
            head, body = await _read(reader)
            assert head.command_id == c.DELIVER
            d = c.decode_deliver(body, version)
            assert d.registered_delivery == 1 and d.dest_id == "10657"
            report = c.decode_status_report(d.content, version)
            assert (report.msg_id, report.stat, report.dest_terminal) == (sr.msg_id, "UNDELIV", "13900000002")
            writer.write(c.encode_deliver_resp(head.seq, d.msg_id, 0, version))
            writer.write(c.encode_active_test(8))
            head, body = await _read(reader)
            assert (head.command_id, body) == (c.ACTIVE_TEST | c.RESP, b"\0")
            assert srv.texts() == [("13900000002", "你好")]
            assert srv.deliver_resps == [(d.msg_id, 0)] and len(srv.client_active_tests) == 1
            writer.close()

    asyncio.run(main())


def test_bad_secret_is_refused_with_status_3() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            reader, writer, resp = await _login(srv.port, 0x30, secret="wrong-secret")
            assert resp.status == 3
            assert await reader.read() == b""  # the server hangs up
            writer.close()
            assert srv.logins == [(SP, 0x30, 3)]

    asyncio.run(main())


def test_window_is_measured_and_the_cut_leaves_submits_unanswered() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}, window=1, hold_after=3, cut_after=5, receipts=False) as srv:
            reader, writer, _ = await _login(srv.port, 0x20)
            for seq in range(10, 15):
                writer.write(c.encode_submit(seq, c.Submit(f"1390000000{seq - 10}", b"x", msg_fmt=0), 0x20))
            answered = []
            while True:
                try:
                    head, _ = await _read(reader)
                except asyncio.IncompleteReadError:
                    break
                answered.append(head.seq)
            assert answered == [10, 11, 12] and srv.cuts == 1
            assert srv.max_unanswered == 2 and srv.overflows == 1
            writer.close()

    asyncio.run(main())


def test_server_heartbeat_is_counted_when_answered() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}, heartbeat_s=0.05) as srv:
            reader, writer, _ = await _login(srv.port, 0x30)
            head, body = await _read(reader)
            assert head.command_id == c.ACTIVE_TEST
            writer.write(c.encode_active_test_resp(head.seq))
            await writer.drain()
            await asyncio.sleep(0.02)
            assert srv.active_test_answers == 1
            await srv.send_mo("13900000009", "退订")
            while head.command_id != c.DELIVER:
                head, body = await _read(reader)
            mo = c.decode_deliver(body, 0x30)
            assert c.decode_text(mo.content, mo.msg_fmt, mo.udhi) == (b"", "退订")
            writer.close()

    asyncio.run(main())


def test_submit_layout_parse_matches_struct() -> None:
    pdu = c.encode_submit(1, c.Submit("139", b"ab", msg_fmt=0, src_id="1065"), 0x30)
    assert struct.unpack(">I", pdu[:4])[0] == len(pdu)

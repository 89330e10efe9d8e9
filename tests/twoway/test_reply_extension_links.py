"""Reply extension codes on an operator link and in each provider's request: a CMPP link sends each
message from ``Src_Id`` = service number + the message's code (the independent test ISMG records
it), and a reply the ISMG delivers to that number is matched to that message, not the last one;
Kannel (``from``), SMPP (``source_addr``), Tencent (``ExtendCode``) and 云MAS (``addSerial``, in the
``mac`` too) carry the code where their protocol puts it."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from urllib.parse import parse_qsl

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.gateways.base import SendItem
from broadcast.gateways.cmas import compute_mac
from broadcast.gateways.cmpp import CmppGateway
from broadcast.gateways.reply_codes import extension_code
from broadcast.gateways.smpp import SmppGateway, SmppSettings
from broadcast.gateways.smpp_codec import decode_submit_sm
from tests.gateways.cmpp_server import CmppServer
from tests.gateways.test_cmas import AP, EC, SIGN, capture
from tests.gateways.test_cmas import SECRET as CMAS_SECRET
from tests.gateways.test_cmas import gateway as cmas_gateway
from tests.gateways.test_cmas import run_send as cmas_send
from tests.gateways.test_cmpp import SECRET, SP, SRC
from tests.gateways.test_cmpp import gateway as cmpp_gateway
from tests.gateways.test_kannel import Capture
from tests.gateways.test_kannel import gateway as kannel_gateway
from tests.gateways.test_kannel import send as kannel_send
from tests.gateways.test_tencent import gateway as tencent_gateway
from tests.gateways.test_tencent import ok as tencent_ok
from tests.gateways.test_tencent import run as tencent_run
from tests.helpers import scripted
from tests.helpers.scripted import approved_message, as_operator, statuses

setup = scripted.setup  # 20 members of 一支部, 13800000000..13800000019


def test_a_reply_on_a_cmpp_link_to_the_first_messages_number_answers_the_first_message(setup, monkeypatch) -> None:
    ws = setup
    monkeypatch.setenv("BROADCAST_REPLY_EXTENSION_DIGITS", "4")
    first = approved_message(ws, text="第一条：周五上午集中学习")

    async def main() -> tuple[CmppServer, int]:
        async with CmppServer({SP: SECRET}, latency_s=0.001) as srv:
            gw: CmppGateway = cmpp_gateway(srv.port)
            dispatcher = Dispatcher(as_operator(ws, "cron"), gw, receipt_wait_s=0)
            try:
                await dispatcher.run_pass()
                second = approved_message(ws, text="第二条：周六上午义务劳动")
                await dispatcher.run_pass()
                await srv.send_mo("13800000003", "周五我请假", dest_id=SRC + extension_code(first, 4))
                await srv.send_mo("13800000004", "周六几点集合？", dest_id=SRC)  # the bare service number
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    with ws.engine.connect() as conn:
                        if conn.execute(sa.text("select count(*) from feedback")).scalar() == 2:
                            break
                    await asyncio.sleep(0.02)
            finally:
                await gw.aclose()
                dispatcher.close()
            return srv, second

    srv, second = asyncio.run(main())
    assert statuses(ws, first) == statuses(ws, second) == {"delivered": 20}  # the ISMG's reports came back
    by_message = {(s.src_id, s.dest) for s in srv.submits}
    assert {src for src, _ in by_message} == {SRC + extension_code(first, 4), SRC + extension_code(second, 4)}
    with ws.engine.connect() as conn:
        got = conn.execute(sa.text("select phone, message_id from feedback order by phone")).all()
        to = conn.execute(sa.text("select to_addr from inbound order by phone")).scalars().all()
    assert to == [SRC + extension_code(first, 4), SRC]
    assert [tuple(r) for r in got] == [("+8613800000003", first), ("+8613800000004", second)]


def item(extension: str = "0042") -> SendItem:
    return SendItem(7, "+8613800000001", "明天上午九点开会", extension)


def test_kannel_sends_from_its_number_plus_the_code() -> None:
    cap = Capture()
    gw = kannel_gateway(cap)  # sender 10690
    assert gw.capabilities.reply_extension == 15 and gw.reply_address("0042") == "106900042"
    kannel_send(gw, item())
    assert dict(parse_qsl(cap.requests[0].url.query.decode()))["from"] == "106900042"
    assert kannel_gateway(Capture(), sender="CityHall").capabilities.reply_extension == 0  # a name carries none


def test_smpp_sends_from_its_number_plus_the_code() -> None:
    settings = SmppSettings(host="127.0.0.1", port=2775, system_id="kit", password=SecretStr("kitpass1"),
                            source_addr="10690")
    gw = SmppGateway(settings)
    assert gw.capabilities.reply_extension == 15 and gw.reply_address("0042") == "106900042"
    from broadcast.gateways.segments import split

    coding, parts = split(item().text, 1, gsm7=True)
    _, sm = decode_submit_sm(gw.submit_pdu(1, item(), parts[0], coding))
    assert sm.source_addr == "106900042"
    alpha = SmppGateway(SmppSettings(host="127.0.0.1", system_id="kit", password=SecretStr("pw"), source_addr="CityHall"))
    assert alpha.capabilities.reply_extension == 0 and alpha.reply_address("0042") == ""


def test_cmpp_has_room_for_the_code_within_src_ids_21_digits() -> None:
    gw = cmpp_gateway(7890)
    assert gw.capabilities.reply_extension == 21 - len(SRC) and gw.reply_address("0042") == SRC + "0042"
    assert cmpp_gateway(7890, src_id="1" * 21).capabilities.reply_extension == 0


def test_tencent_sends_the_code_as_extend_code() -> None:
    bodies: list[dict[str, object]] = []

    def handler(action: str, body: dict[str, object]) -> httpx.Response:
        bodies.append(body)
        return tencent_ok(action, body)

    gw = tencent_gateway(handler)
    assert gw.reply_address("0042") == "0042"
    tencent_run(lambda g: g.send([item(), SendItem(8, "+8613800000002", "明天上午九点开会", "")]), gw)
    assert sorted(str(b.get("ExtendCode", "")) for b in bodies) == ["", "0042"]  # one request per code


@pytest.mark.parametrize("fixed", ["", "66"])
def test_cmas_appends_the_code_to_add_serial_and_signs_it(fixed: str) -> None:
    seen, transport = capture()
    gw = cmas_gateway(transport, add_serial=fixed)
    assert gw.reply_address("0042") == fixed + "0042"
    cmas_send(gw, [item()])
    body = json.loads(base64.b64decode(seen[0].content))
    assert body["addSerial"] == fixed + "0042"
    assert body["mac"] == compute_mac(EC, AP, CMAS_SECRET, "13800000001", body["content"], SIGN, fixed + "0042")

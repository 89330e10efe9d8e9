"""The ``smpp`` gateway against a fake SMSC (tests/gateways/fake_smsc.py) on 127.0.0.1, and its pure parts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr, ValidationError

from broadcast.gateways import smpp_codec as c
from broadcast.gateways.base import Outcome, SendItem
from broadcast.gateways.session import Frame
from broadcast.gateways.smpp import SmppDialect, SmppGateway, SmppSettings, classify, destination, source_ton_npi
from tests.gateways.fake_smsc import FakeSmsc

T = TypeVar("T")
LONG = ("各位同志：本周六上午八点半在新区文化中心召开年度工作总结大会，请各支部书记带队提前十五分钟到场签到，着正装，携带笔记本。会议期间请将手机调至静音，因故不能参加者请于周五下午五点前向办公室请假。"
        "停车位有限，请尽量乘坐公共交通前往，谢谢各位的配合与支持！会后各支部请于下周一前提交本支部的学习心得和整改清单。")


def gw(smsc: FakeSmsc, **over: Any) -> SmppGateway:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": smsc.port, "system_id": "kit",
                              "password": SecretStr("kitpass1"), "source_addr": "10690", "response_timeout_s": 2.0}
    settings = SmppSettings(**{**fields, **over})
    return SmppGateway(settings)


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(make(), 30))


async def send_and_wait(g: SmppGateway, items: list[SendItem], receipts: int = 0) -> tuple[list[Any], list[Any]]:
    try:
        results = await g.send(items)
        got: list[Any] = []
        give_up = time.monotonic() + 5
        while len(got) < receipts and time.monotonic() < give_up:
            got += await g.fetch_receipts()
            await asyncio.sleep(0.01)
        return results, got
    finally:
        await g.aclose()


def frame(data: bytes) -> Frame:
    h = c.decode_header(data)
    return Frame(h.command_id, h.seq, h.status, data[16:], data)


# -- pure --------------------------------------------------------------------------------------------

def test_classify_table() -> None:
    ok = classify(frame(c.encode_submit_sm_resp(1, "m1")))
    assert ok.ok and ok.msg_id == "m1"
    def status(name: str) -> Any:
        return classify(frame(c.encode_pdu(c.SUBMIT_SM_RESP, 1, status=c.STATUS[name])))
    assert status("ESME_RTHROTTLED").throttled and status("ESME_RMSGQFUL").throttled
    bad_dest = status("ESME_RINVDSTADR")
    assert not bad_dest.ok and bad_dest.recipient_fault and not bad_dest.pause and bad_dest.code == "ESME_RINVDSTADR"
    assert status("ESME_RINVSRCADR").pause
    fail = status("ESME_RSUBMITFAIL")
    assert not (fail.ok or fail.throttled or fail.recipient_fault or fail.pause)
    vendor = classify(frame(c.encode_pdu(c.SUBMIT_SM_RESP, 1, status=0x401)))
    assert vendor.code == "vendor 0x00000401" and not vendor.ok
    nack = classify(frame(c.encode_generic_nack(1, c.STATUS["ESME_RINVCMDLEN"])))
    assert not nack.ok and nack.detail == "generic_nack: ESME_RINVCMDLEN"


def test_dialect() -> None:
    d = SmppDialect(c.BIND_TRANSCEIVER, c.Bind("kit", "pw"))
    assert c.decode_bind(d.login(5)) == (c.Header(28, c.BIND_TRANSCEIVER, 0, 5), c.Bind("kit", "pw"))
    assert d.login_refusal(frame(c.encode_bind_resp(c.BIND_TRANSCEIVER, 5, "S"))) is None
    refused = d.login_refusal(frame(c.encode_pdu(c.BIND_TRANSCEIVER_RESP, 5, status=0x0E)))
    assert refused == "bind_transceiver refused: ESME_RINVPASWD (0x0000000E)"
    assert d.answer(frame(c.encode_enquire_link(3))) == c.encode_enquire_link_resp(3)
    assert d.answer(frame(c.encode_unbind(3))) == c.encode_unbind_resp(3)
    assert d.answer(frame(c.encode_deliver_sm(3, c.ShortMessage("1")))) == c.encode_deliver_sm_resp(3)
    assert d.answer(frame(c.encode_data_sm(3, c.ShortMessage("1")))) == c.encode_data_sm_resp(3)
    assert d.answer(frame(c.encode_pdu(c.OUTBIND, 3))) == c.encode_generic_nack(3)
    assert d.is_keepalive(frame(c.encode_enquire_link(1))) and d.is_logout(frame(c.encode_unbind(1)))
    assert d.parse_header(c.encode_enquire_link(9)) == (16, c.ENQUIRE_LINK, 9, 0)


def test_addresses() -> None:
    assert destination("+8613800000000") == (1, 1, "8613800000000")
    assert destination("13800000000") == (0, 1, "13800000000")
    assert source_ton_npi("ACME", None, None) == (5, 0)
    assert source_ton_npi("+4412345", None, None) == (1, 1)
    assert source_ton_npi("10690", None, None) == (0, 1)
    assert source_ton_npi("10690", 3, None) == (3, 1)


def test_settings() -> None:
    with pytest.raises(ValidationError, match="8 characters"):
        SmppSettings(host="h", system_id="s", password=SecretStr("ninechars"))
    s = SmppSettings(host="h", system_id="s", password=SecretStr("pw"))
    assert (s.port, s.window, s.connections, s.bind, s.timeout_s) == (2775, 16, 1, "transceiver", 10.0)
    problems = SmppGateway(s).check()
    assert any("unencrypted" in p for p in problems) and any("SOURCE_ADDR" in p for p in problems)


# -- against the fake SMSC -------------------------------------------------------------------------------

def test_chinese_text_in_three_parts_is_accepted_and_delivered() -> None:
    with FakeSmsc().running() as smsc:
        results, receipts = run(lambda: send_and_wait(gw(smsc), [SendItem(7, "+8613800000001", LONG)], receipts=1))
    (r,) = results
    assert r.outcome is Outcome.ACCEPTED and r.detail == "3 parts"
    assert [s.esm_class for s in smsc.submits] == [0x40] * 3 and {s.data_coding for s in smsc.submits} == {8}
    assert {s.destination_addr for s in smsc.submits} == {"8613800000001"} and smsc.submits[0].dest_addr_ton == 1
    joined = "".join(s.short_message[6:].decode("utf-16-be") for s in smsc.submits)
    assert joined == LONG
    assert [(x.delivery_id, x.status, x.provider_id) for x in receipts] == [(7, "delivered", r.provider_id)]


def test_refused_destination_is_a_recipient_fault() -> None:
    with FakeSmsc(refuse={"8613900000000"}).running() as smsc:
        results, _ = run(lambda: send_and_wait(gw(smsc), [SendItem(1, "+8613900000000", "hi"),
                                                          SendItem(2, "+8613900000001", "hi")]))
    bad, good = results
    assert bad.outcome is Outcome.PERMANENT and bad.recipient_fault and not bad.pause and bad.code == "ESME_RINVDSTADR"
    assert good.outcome is Outcome.ACCEPTED


def test_bind_refused_pauses_with_the_status() -> None:
    with FakeSmsc().running() as smsc:
        results, _ = run(lambda: send_and_wait(gw(smsc, password=SecretStr("wrong")), [SendItem(1, "+86138", "hi")]))
        unknown, _ = run(lambda: send_and_wait(gw(smsc, system_id="nobody"), [SendItem(1, "+86138", "hi")]))
    assert results[0].outcome is Outcome.PERMANENT and results[0].pause and "ESME_RINVPASWD" in (results[0].detail or "")
    assert unknown[0].pause and "ESME_RBINDFAIL" in (unknown[0].detail or "")


def test_throttling_slows_down_and_loses_nothing() -> None:
    with FakeSmsc(throttle_first=3).running() as smsc:
        results, _ = run(lambda: send_and_wait(gw(smsc), [SendItem(i, f"+86138{i:08d}", "hi") for i in range(4)]))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 4
    assert len(smsc.submits) == 7  # three throttled, submitted again


def test_always_throttled_is_retryable_never_a_failure() -> None:
    with FakeSmsc(throttle_all=True).running() as smsc:
        results, _ = run(lambda: send_and_wait(gw(smsc), [SendItem(1, "+86138", "hi")]))
    assert results[0].outcome is Outcome.RETRYABLE and results[0].code == "ESME_RTHROTTLED" and not results[0].maybe_sent


def test_a_submit_never_answered_is_in_doubt_within_the_timeout() -> None:
    with FakeSmsc(silent=True).running() as smsc:
        started = time.monotonic()
        results, _ = run(lambda: send_and_wait(gw(smsc, response_timeout_s=0.4), [SendItem(1, "+86138", "hi")]))
        elapsed = time.monotonic() - started
    assert results[0].outcome is Outcome.RETRYABLE and results[0].maybe_sent
    assert 0.35 < elapsed < 3


def test_undeliverable_receipt_fails_the_delivery_and_decimal_ids_match() -> None:
    with FakeSmsc(undeliverable={"8613700000000"}, receipt_as_decimal=True).running() as smsc:
        results, receipts = run(lambda: send_and_wait(gw(smsc), [SendItem(1, "+8613700000000", "hi"),
                                                                 SendItem(2, "+8613700000001", "hi")], receipts=2))
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    by_id = {x.delivery_id: (x.status, x.code) for x in receipts}
    assert by_id == {1: ("failed", "UNDELIV:001"), 2: ("delivered", "DELIVRD")}


def test_mobile_originated_is_kept_with_the_raw_pdu() -> None:
    async def go(g: SmppGateway) -> list[Any]:
        try:
            await g.send([SendItem(1, "+86138", "hi")])
            for _ in range(200):
                got = await g.held_inbound()
                if got:
                    return got
                await asyncio.sleep(0.01)
            return []
        finally:
            await g.aclose()

    with FakeSmsc(mo=[("+8613800000009", "退订")]).running() as smsc:
        (mo,) = run(lambda: go(gw(smsc)))
    assert (mo.gateway, mo.phone, mo.to, mo.text) == ("smpp", "+8613800000009", "10690", "退订")
    assert c.decode_deliver_sm(mo.raw)[1].short_message == "退订".encode("utf-16-be")


def test_data_sm_receipts_and_replies_are_taken_like_deliver_sm_and_answered_data_sm_resp() -> None:
    async def go(g: SmppGateway) -> tuple[list[Any], list[Any], list[Any]]:
        try:
            results = await g.send([SendItem(1, "+8613700000000", "hi"), SendItem(2, "+8613700000001", "hi")])
            receipts: list[Any] = []
            inbound: list[Any] = []
            for _ in range(300):
                receipts += await g.fetch_receipts()
                inbound += await g.held_inbound()
                if len(receipts) == 2 and inbound:
                    break
                await asyncio.sleep(0.01)
            return results, receipts, inbound
        finally:
            await g.aclose()

    with FakeSmsc(data_sm=True, undeliverable={"8613700000001"}, mo=[("+8613800000009", "收到")]).running() as smsc:
        results, receipts, inbound = run(lambda: go(gw(smsc)))
        answers = list(smsc.answers)
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert {(x.delivery_id, x.status, x.code) for x in receipts} == {(1, "delivered", "DELIVRD"),
                                                                     (2, "failed", "UNDELIV:001")}
    (mo,) = inbound
    assert (mo.phone, mo.to, mo.text) == ("+8613800000009", "10690", "收到")
    assert c.decode_data_sm(mo.raw)[1].tlv(c.TLV_MESSAGE_PAYLOAD) == "收到".encode("utf-16-be")
    assert {cmd for cmd, _ in answers} == {c.DATA_SM_RESP} and len(answers) == 3  # each answered, none nacked


def test_a_reply_in_parts_is_joined_from_its_udh_or_its_sar_tlvs() -> None:
    def part(who: str, text: str, udh: bytes = b"", tlvs: tuple[tuple[int, bytes], ...] = ()) -> c.ShortMessage:
        return c.ShortMessage("10690", source_addr=who, source_addr_ton=1, data_coding=8, tlvs=tlvs,
                              esm_class=c.ESM_UDHI if udh else 0, short_message=udh + text.encode("utf-16-be"))

    def sar(ref: int, total: int, n: int) -> tuple[tuple[int, bytes], ...]:
        return ((c.TLV_SAR_MSG_REF_NUM, ref.to_bytes(2, "big")), (c.TLV_SAR_TOTAL_SEGMENTS, bytes([total])),
                (c.TLV_SAR_SEGMENT_SEQNUM, bytes([n])))

    wide = lambda n: bytes([6, 8, 4, 0x12, 0x34, 2, n])  # a 16-bit reference (0x1234), 2 parts
    pdus = [part("8613800000001", "后半。", wide(2)), part("8613800000002", "甲", tlvs=sar(9, 2, 1)),
            part("8613800000001", "前半，", wide(1)), part("8613800000002", "乙", tlvs=sar(9, 2, 2)),
            part("8613800000003", "孤零零", bytes([5, 0, 3, 1, 2, 1]))]  # its part 2 never comes

    async def go(g: SmppGateway) -> tuple[list[Any], list[Any]]:
        try:
            await g.pool.ping()
            await asyncio.sleep(0.2)
            whole = await g.held_inbound()
            await asyncio.sleep(0.3)
            return whole, await g.held_inbound()
        finally:
            await g.aclose()

    with FakeSmsc(mo_pdus=pdus).running() as smsc:
        whole, late = run(lambda: go(gw(smsc, join_timeout_s=0.3)))
        answered = len(smsc.answers)
    assert sorted((m.phone, m.text, m.incomplete) for m in whole) == [
        ("+8613800000001", "前半，后半。", False), ("+8613800000002", "甲乙", False)]
    assert [(m.phone, m.text, m.incomplete) for m in late] == [("+8613800000003", "孤零零[…]", True)]
    assert answered == 5  # every part answered, joined or not


def test_transmitter_and_receiver_binds() -> None:
    with FakeSmsc().running() as smsc:
        results, receipts = run(lambda: send_and_wait(gw(smsc, bind="transmitter+receiver"),
                                                      [SendItem(3, "+86138", "hi")], receipts=1))
    assert results[0].outcome is Outcome.ACCEPTED
    assert {b for b, _ in smsc.binds} == {c.BIND_TRANSMITTER, c.BIND_RECEIVER}
    # the fake sends receipts on the link the submit came on: the transmitter's receipt is still taken
    assert [x.delivery_id for x in receipts] == [3]


def test_ping() -> None:
    with FakeSmsc().running() as smsc:
        assert run(lambda: gw(smsc).ping()) is None
        assert "ESME_RINVPASWD" in (run(lambda: gw(smsc, password=SecretStr("bad")).ping()) or "")

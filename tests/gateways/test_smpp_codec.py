"""SMPP 3.4 PDUs: byte layouts written by hand from the spec, round trips, receipts, truncation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcast.gateways import smpp_codec as c
from broadcast.gateways import smpp_receipts as rc


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# -- byte layouts (SMPP 3.4 §4) ------------------------------------------------------------------

def test_enquire_link_is_a_bare_header() -> None:
    # §4.11.1: command_length 16, command_id 0x00000015, command_status 0, sequence_number
    assert c.encode_enquire_link(7) == h("00000010 00000015 00000000 00000007")
    assert c.encode_enquire_link_resp(7) == h("00000010 80000015 00000000 00000007")
    assert c.decode_empty(h("00000010 80000015 00000000 00000007"), c.ENQUIRE_LINK_RESP) == c.Header(16, c.ENQUIRE_LINK_RESP, 0, 7)


def test_unbind_and_generic_nack() -> None:
    assert c.encode_unbind(1) == h("00000010 00000006 00000000 00000001")
    assert c.encode_unbind_resp(1) == h("00000010 80000006 00000000 00000001")
    # generic_nack carries the error in command_status: 0x03 ESME_RINVCMDID
    assert c.encode_generic_nack(0x1234) == h("00000010 80000000 00000003 00001234")


def test_bind_transceiver_layout() -> None:
    # §4.1.5: system_id C-string, password C-string, system_type C-string, interface_version,
    # addr_ton, addr_npi, address_range C-string
    pdu = c.encode_bind(c.BIND_TRANSCEIVER, 1, c.Bind("smppclient1", "password", "", 0x34, 1, 1, ""))
    body = b"smppclient1\0" + b"password\0" + b"\0" + h("34 01 01") + b"\0"
    assert len(body) == 26
    assert pdu == h("0000002a 00000009 00000000 00000001") + body
    head, bind = c.decode_bind(pdu)
    assert head == c.Header(42, c.BIND_TRANSCEIVER, 0, 1)
    assert bind == c.Bind("smppclient1", "password", "", 0x34, 1, 1, "")


def test_bind_transmitter_and_receiver_ids() -> None:
    b = c.Bind("a", "b", "CMT")
    assert c.encode_bind(c.BIND_TRANSMITTER, 2, b)[4:8] == h("00000002")
    assert c.encode_bind(c.BIND_RECEIVER, 2, b)[4:8] == h("00000001")
    with pytest.raises(ValueError):
        c.encode_bind(c.SUBMIT_SM, 2, b)


def test_bind_field_limits() -> None:
    with pytest.raises(ValueError, match="password"):
        c.encode_bind(c.BIND_TRANSCEIVER, 1, c.Bind("sys", "ninechars"))  # 8 characters at most
    with pytest.raises(ValueError, match="system_id"):
        c.encode_bind(c.BIND_TRANSCEIVER, 1, c.Bind("x" * 16, "pw"))


def test_bind_resp_ok_and_refused() -> None:
    ok = h("00000015 80000009 00000000 00000001") + b"SMSC\0"
    assert c.encode_bind_resp(c.BIND_TRANSCEIVER, 1, "SMSC") == ok
    assert c.decode_bind_resp(ok) == (c.Header(21, c.BIND_TRANSCEIVER_RESP, 0, 1), "SMSC")
    # with the sc_interface_version TLV (0x0210, length 1, 0x34)
    tlv = h("0000001a 80000002 00000000 00000002") + b"SMSC\0" + h("0210 0001 34")
    assert c.decode_bind_resp(tlv)[1] == "SMSC"
    # an error answer without a body: ESME_RINVPASWD 0x0E
    refused = h("00000010 80000009 0000000e 00000001")
    head, system_id = c.decode_bind_resp(refused)
    assert (head.status, system_id, c.status_name(head.status)) == (0x0E, "", "ESME_RINVPASWD")


def test_submit_sm_layout_ucs2_with_udh() -> None:
    udh = h("050003 2a 02 01")
    text = udh + "你好".encode("utf-16-be")
    sm = c.ShortMessage(
        service_type="", source_addr_ton=5, source_addr_npi=0, source_addr="ACME",
        dest_addr_ton=1, dest_addr_npi=1, destination_addr="8613800000000",
        esm_class=c.ESM_UDHI, registered_delivery=1, data_coding=8, short_message=text,
    )
    body = (
        b"\0"                        # service_type ""
        + h("05 00") + b"ACME\0"      # source_addr_ton, _npi, source_addr
        + h("01 01") + b"8613800000000\0"
        + h("40 00 00")               # esm_class UDHI, protocol_id, priority_flag
        + b"\0" + b"\0"               # schedule_delivery_time, validity_period
        + h("01 00 08 00")            # registered_delivery, replace_if_present, data_coding UCS-2, sm_default_msg_id
        + h("0a")                     # sm_length = 6 UDH + 4
        + udh + h("4f60 597d")
    )
    pdu = c.encode_submit_sm(3, sm)
    assert pdu == (16 + len(body)).to_bytes(4, "big") + h("00000004 00000000 00000003") + body
    assert c.decode_submit_sm(pdu) == (c.Header(16 + len(body), c.SUBMIT_SM, 0, 3), sm)


def test_submit_sm_refuses_over_254_octets() -> None:
    with pytest.raises(ValueError, match="254"):
        c.encode_submit_sm(1, c.ShortMessage("1", short_message=b"x" * 255))
    assert c.decode_submit_sm(c.encode_submit_sm(1, c.ShortMessage("1", short_message=b"x" * 254)))[1].short_message == b"x" * 254


def test_submit_sm_resp() -> None:
    ok = h("00000019 80000004 00000000 00000003") + b"abc12345\0"
    assert c.encode_submit_sm_resp(3, "abc12345") == ok
    assert c.decode_submit_sm_resp(ok) == (c.Header(25, c.SUBMIT_SM_RESP, 0, 3), "abc12345")
    # ESME_RTHROTTLED with no body (§4.4.2: the body is not returned on error)
    head, message_id = c.decode_submit_sm_resp(h("00000010 80000004 00000058 00000003"))
    assert (c.status_name(head.status), message_id) == ("ESME_RTHROTTLED", "")


def test_status_names() -> None:
    assert c.status_name(0) == "ESME_ROK"
    assert c.status_name(0x0B) == "ESME_RINVDSTADR"
    assert c.status_name(0x0D) == "ESME_RBINDFAIL"
    assert c.status_name(0x0F) == "ESME_RINVSYSID"
    assert c.status_name(0x14) == "ESME_RMSGQFUL"
    assert c.status_name(0x45) == "ESME_RSUBMITFAIL"
    assert c.status_name(0x400) == "vendor 0x00000400"
    assert c.status_name(0x99) == "0x00000099"
    assert c.STATUS["ESME_RTHROTTLED"] == 0x58


def test_deliver_sm_receipt_with_tlvs() -> None:
    text = rc.receipt_text("abc12345", "DELIVRD", submit_date="2605011200", done_date="2605011201", text="hello")
    sm = c.ShortMessage(
        source_addr="8613800000000", destination_addr="ACME", esm_class=c.ESM_RECEIPT, registered_delivery=0,
        short_message=text.encode(),
        tlvs=((c.TLV_RECEIPTED_MESSAGE_ID, b"abc12345\0"), (c.TLV_MESSAGE_STATE, b"\x02")),
    )
    pdu = c.encode_deliver_sm(9, sm)
    # the TLVs after short_message: tag, length, value
    assert pdu.endswith(h("001e 0009") + b"abc12345\0" + h("0427 0001 02"))
    assert pdu[4:8] == h("00000005")
    head, back = c.decode_deliver_sm(pdu)
    assert back == sm and head.seq == 9
    assert rc.delivery_report(back) == rc.DeliveryReport("abc12345", "DELIVRD", "000", "2605011201")
    assert c.encode_deliver_sm_resp(9) == h("00000011 80000005 00000000 00000009 00")


def test_receipt_from_tlvs_alone_and_from_text_alone() -> None:
    tlv_only = c.ShortMessage("x", esm_class=0x04, tlvs=((0x001E, b"77\0"), (0x0427, b"\x05")))
    assert rc.delivery_report(tlv_only) == rc.DeliveryReport("77", "UNDELIVERABLE", "", "")
    text_only = c.ShortMessage("x", esm_class=0x04, short_message=b"id:0123 sub:001 dlvrd:000 submit date:2605011200 "
                               b"done date:260501120133 stat:UNDELIV err:034 text:")
    assert rc.delivery_report(text_only) == rc.DeliveryReport("0123", "UNDELIV", "034", "260501120133")
    mobile = c.ShortMessage("x", esm_class=0x00, short_message=b"id:1 stat:DELIVRD")
    assert rc.delivery_report(mobile) is None and not rc.is_receipt(mobile)


def test_data_sm_layout_receipt_and_resp() -> None:
    # §4.7.1: service_type, source TON/NPI/addr, dest TON/NPI/addr, esm_class, registered_delivery,
    # data_coding, then TLVs only. A receipt: esm_class 0x04, receipted_message_id 0x001E (C-string),
    # message_state 0x0427 (1 octet: 2 DELIVERED).
    raw = h("00000032 00000103 00000000 00000009"  # 50 octets, data_sm, seq 9
            "00"  # service_type ""
            "01 01 3836313338303000"  # source 1/1 "8613800" (8 octets with the NUL)
            "00 01 313036393000"  # dest 0/1 "10690"
            "04 00 00"  # esm_class receipt, registered_delivery 0, data_coding 0
            "001E 0003 613100"  # receipted_message_id "a1"
            "0427 0001 02")  # message_state DELIVERED
    head, sm = c.decode_data_sm(raw)
    assert head == c.Header(50, c.DATA_SM, 0, 9)
    assert (sm.source_addr, sm.source_addr_ton, sm.destination_addr, sm.esm_class) == ("8613800", 1, "10690", 4)
    assert rc.delivery_report(sm) == rc.DeliveryReport("a1", "DELIVERED", "", "")
    assert c.encode_data_sm(9, sm) == raw
    # the conventional text in message_payload (0x0424) is read when the TLVs say no id
    text = rc.receipt_text("77", "UNDELIV", "034").encode()
    by_text = c.ShortMessage("10690", esm_class=c.ESM_RECEIPT, tlvs=((c.TLV_MESSAGE_PAYLOAD, text),))
    assert rc.delivery_report(c.decode_data_sm(c.encode_data_sm(3, by_text))[1]) == rc.DeliveryReport(
        "77", "UNDELIV", "034", "")
    # data_sm_resp: message_id C-string, like submit_sm_resp
    assert c.encode_data_sm_resp(9) == h("00000011 80000103 00000000 00000009 00")
    assert c.decode_data_sm_resp(c.encode_data_sm_resp(9, "x1")) == (c.Header(19, c.DATA_SM_RESP, 0, 9), "x1")
    with pytest.raises(c.PduError):
        c.decode_data_sm(raw[:-3])  # a TLV cut short


def test_parse_receipt_text() -> None:
    fields = rc.parse_receipt_text("id:A1B2 sub:001 dlvrd:001 submit date:2605011200 done date:2605011201 "
                                  "stat:DELIVRD err:000 Text:stat:x id:y")
    assert fields == {"id": "A1B2", "sub": "001", "dlvrd": "001", "submit date": "2605011200",
                      "done date": "2605011201", "stat": "DELIVRD", "err": "000", "text": "stat:x id:y"}
    assert rc.parse_receipt_text("not a receipt") == {}


# -- truncation: always PduError (a ValueError), never struct.error / IndexError -----------------------

def _valid_pdus() -> list[bytes]:
    return [
        c.encode_bind(c.BIND_TRANSCEIVER, 1, c.Bind("sys", "pw")),
        c.encode_bind_resp(c.BIND_TRANSCEIVER, 1, "SMSC"),
        c.encode_submit_sm(1, c.ShortMessage("86138", short_message=b"hi", tlvs=((0x0427, b"\x02"),))),
        c.encode_submit_sm_resp(1, "id1"),
        c.encode_deliver_sm(1, c.ShortMessage("86138", esm_class=4, tlvs=((0x001E, b"id1\0"),))),
    ]


_DECODERS = [c.decode_bind, c.decode_bind_resp, c.decode_submit_sm, c.decode_submit_sm_resp, c.decode_deliver_sm]


@pytest.mark.parametrize("index", range(5))
def test_truncated_pdus_are_refused(index: int) -> None:
    pdu, decode = _valid_pdus()[index], _DECODERS[index]
    decode(pdu)
    for cut in range(len(pdu)):
        with pytest.raises(c.PduError):
            decode(pdu[:cut])
    # a header that claims the right length over a body cut short
    body_cut = len(pdu) - 1
    forged = body_cut.to_bytes(4, "big") + pdu[4:body_cut]
    if index not in (1, 3):  # a response body may be empty as a whole, but not cut mid-string
        with pytest.raises(c.PduError):
            decode(forged)


def test_pdu_error_is_a_value_error_and_names_the_problem() -> None:
    assert issubclass(c.PduError, ValueError)
    with pytest.raises(c.PduError, match="truncated header"):
        c.decode_header(b"\0\0\0\x10")
    with pytest.raises(c.PduError, match="below"):
        c.decode_header(h("00000008 00000015 00000000 00000001"))
    with pytest.raises(c.PduError, match="no terminating NUL"):
        c.decode_submit_sm_resp(h("00000013 80000004 00000000 00000001") + b"abc")
    bad_tlv = c.encode_deliver_sm(1, c.ShortMessage("1", tlvs=((0x001E, b"abc\0"),)))
    bad_tlv = (len(bad_tlv) - 2).to_bytes(4, "big") + bad_tlv[4:-2]
    with pytest.raises(c.PduError, match="TLV"):
        c.decode_deliver_sm(bad_tlv)


@given(st.binary(max_size=80))
def test_decoding_garbage_raises_only_pdu_error(data: bytes) -> None:
    for decode in _DECODERS:
        try:
            decode(data)
        except c.PduError:
            pass


@given(
    dest=st.text(alphabet="0123456789", min_size=1, max_size=20),
    payload=st.binary(max_size=254),
    esm=st.integers(0, 255), coding=st.integers(0, 255), seq=st.integers(0, 0x7FFFFFFF),
)
def test_short_message_round_trip(dest: str, payload: bytes, esm: int, coding: int, seq: int) -> None:
    sm = c.ShortMessage(dest, short_message=payload, esm_class=esm, data_coding=coding,
                        tlvs=((c.TLV_MESSAGE_STATE, b"\x02"),))
    assert c.decode_submit_sm(c.encode_submit_sm(seq, sm))[1] == sm
    assert c.decode_deliver_sm(c.encode_deliver_sm(seq, sm))[1] == sm

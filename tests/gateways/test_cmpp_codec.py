"""The CMPP codec against the spec: the published CONNECT example byte for byte, SUBMIT and DELIVER
layouts field by field at offsets written here from the spec (2.0 and 3.0), round trips, and
truncated or malformed PDUs refused with ``CmppDecodeError``."""

from __future__ import annotations

import hashlib
import struct
from datetime import datetime

import pytest

from broadcast.gateways import cmpp_codec as c

V2, V21, V3 = 0x20, 0x21, 0x30


def test_published_connect_example() -> None:
    pdu = c.encode_connect(0x17, "900001", "888888", V21, 1021080510)
    expected = "00000027 00000001 00000017 393030303031 90d00c1d517abd0b4f65f6bcf8535d16 21 3cdc73be"
    assert pdu == bytes.fromhex(expected.replace(" ", ""))
    connect = c.decode_connect(pdu[12:])
    assert (connect.source_addr, connect.version, connect.timestamp) == ("900001", V21, 1021080510)
    assert connect.authenticator == c.authenticator_source("900001", "888888", 1021080510)


def test_timestamp_is_mmddhhmmss_and_zero_padded_in_the_authenticator() -> None:
    assert c.timestamp_of(datetime(2026, 1, 2, 3, 4, 5)) == 102030405
    expected = hashlib.md5(b"900001" + b"\0" * 9 + b"secret" + b"0102030405").digest()
    assert c.authenticator_source("900001", "secret", 102030405) == expected


@pytest.mark.parametrize(("version", "status_bytes", "length"), [(V2, b"\x03", 30), (V3, b"\0\0\0\x03", 33)])
def test_connect_resp_layout_and_authenticator(version: int, status_bytes: bytes, length: int) -> None:
    source = c.authenticator_source("900001", "888888", 1021080510)
    ismg = c.authenticator_ismg(3, source, "888888", version)
    assert ismg == hashlib.md5(status_bytes + source + b"888888").digest()
    pdu = c.encode_connect_resp(9, 3, ismg, version)
    assert len(pdu) == length
    assert struct.unpack(">III", pdu[:12]) == (length, 0x80000001, 9)
    resp = c.decode_connect_resp(pdu[12:], version)
    assert (resp.status, resp.authenticator, resp.version) == (3, ismg, version)
    with pytest.raises(c.CmppDecodeError, match="unexpected bytes|truncated"):
        c.decode_connect_resp(pdu[12:], V2 if version == V3 else V3)  # the other version's size: refused


def _field(pdu: bytes, offset: int, size: int) -> bytes:
    return pdu[12 + offset:12 + offset + size]


def test_submit_2_0_layout_field_by_field() -> None:
    content = "你好".encode("utf-16-be")
    s = c.Submit("13800138000", content, msg_fmt=8, udhi=False, pk_total=2, pk_number=1, service_id="SVC01",
                 msg_src="901234", src_id="1065712345", msg_id=0)
    pdu = c.encode_submit(5, s, V2)
    # spec 2.0: fixed part 117 bytes before Dest_terminal_Id, 21 per number, Msg_Length 1, Reserve 8
    assert len(pdu) == 12 + 117 + 21 + 1 + len(content) + 8
    assert struct.unpack(">III", pdu[:12]) == (len(pdu), 0x4, 5)
    assert _field(pdu, 0, 8) == b"\0" * 8  # Msg_Id
    assert _field(pdu, 8, 1) == b"\x02"  # Pk_total
    assert _field(pdu, 9, 1) == b"\x01"  # Pk_number
    assert _field(pdu, 10, 1) == b"\x01"  # Registered_Delivery
    assert _field(pdu, 12, 10) == b"SVC01\0\0\0\0\0"  # Service_Id
    assert _field(pdu, 23, 21) == b"\0" * 21  # Fee_terminal_Id
    assert _field(pdu, 45, 1) == b"\x00"  # TP_udhi
    assert _field(pdu, 46, 1) == b"\x08"  # Msg_Fmt
    assert _field(pdu, 47, 6) == b"901234"  # Msg_src
    assert _field(pdu, 53, 2) == b"01"  # FeeType
    assert _field(pdu, 95, 21) == b"1065712345" + b"\0" * 11  # Src_Id
    assert _field(pdu, 116, 1) == b"\x01"  # DestUsr_tl
    assert _field(pdu, 117, 21) == b"13800138000" + b"\0" * 10  # Dest_terminal_Id
    assert _field(pdu, 138, 1) == bytes([len(content)])  # Msg_Length
    assert _field(pdu, 139, len(content)) == content
    assert pdu[-8:] == b"\0" * 8  # Reserve
    assert c.decode_submit(pdu[12:], V2) == s


def test_submit_3_0_layout_field_by_field() -> None:
    content = b"\x05\x00\x03\x2a\x03\x02" + "第二段".encode("utf-16-be")
    s = c.Submit("13800138000", content, msg_fmt=8, udhi=True, pk_total=3, pk_number=2, service_id="SVC01",
                 msg_src="901234", src_id="106571234501", link_id="L1")
    pdu = c.encode_submit(6, s, V3)
    # spec 3.0: fixed part 129 bytes, 32 per number + Dest_terminal_type, Msg_Length, LinkID 20
    assert len(pdu) == 12 + 129 + 32 + 1 + 1 + len(content) + 20
    assert _field(pdu, 8, 2) == b"\x03\x02"  # Pk_total, Pk_number
    assert _field(pdu, 23, 32) == b"\0" * 32  # Fee_terminal_Id (32)
    assert _field(pdu, 55, 1) == b"\0"  # Fee_terminal_type
    assert _field(pdu, 57, 1) == b"\x01"  # TP_udhi
    assert _field(pdu, 58, 1) == b"\x08"  # Msg_Fmt
    assert _field(pdu, 59, 6) == b"901234"  # Msg_src
    assert _field(pdu, 107, 21) == b"106571234501" + b"\0" * 9  # Src_Id
    assert _field(pdu, 128, 1) == b"\x01"  # DestUsr_tl
    assert _field(pdu, 129, 32) == b"13800138000" + b"\0" * 21  # Dest_terminal_Id (32)
    assert _field(pdu, 161, 1) == b"\0"  # Dest_terminal_type
    assert _field(pdu, 162, 1) == bytes([len(content)])
    assert _field(pdu, 163, len(content)) == content
    assert pdu[-20:] == b"L1" + b"\0" * 18  # LinkID
    assert c.decode_submit(pdu[12:], V3) == s
    assert c.decode_text(content, 8, True) == (content[:6], "第二段")


@pytest.mark.parametrize(("version", "result_bytes"), [(V2, b"\x08"), (V3, b"\0\0\0\x08")])
def test_submit_resp(version: int, result_bytes: bytes) -> None:
    pdu = c.encode_submit_resp(7, 0x0123456789ABCDEF, 8, version)
    assert pdu[12:] == bytes.fromhex("0123456789abcdef") + result_bytes
    assert struct.unpack(">III", pdu[:12]) == (len(pdu), 0x80000004, 7)
    assert c.decode_submit_resp(pdu[12:], version) == c.SubmitResp(0x0123456789ABCDEF, 8)
    assert c.msg_id_str(0x0123456789ABCDEF) == "81985529216486895"


def test_deliver_status_report_2_0_layout() -> None:
    report = c.StatusReport(0x1122334455667788, "DELIVRD", "2603011200", "2603011201", "13800138000", 42)
    content = c.encode_status_report(report, V2)
    assert len(content) == 60
    assert content[0:8] == bytes.fromhex("1122334455667788")  # Msg_Id
    assert content[8:15] == b"DELIVRD"  # Stat
    assert content[15:25] == b"2603011200"  # Submit_time
    assert content[25:35] == b"2603011201"  # Done_time
    assert content[35:56] == b"13800138000" + b"\0" * 10  # Dest_terminal_Id (21)
    assert content[56:60] == b"\0\0\0\x2a"  # SMSC_sequence
    d = c.Deliver(99, "1065712345", "13800138000", content, registered_delivery=1, msg_fmt=0)
    pdu = c.encode_deliver(3, d, V2)
    # spec 2.0: Msg_Id 8, Dest_Id 21, Service_Id 10, TP_pid, TP_udhi, Msg_Fmt, Src_terminal_Id 21,
    # Registered_Delivery, Msg_Length, Msg_Content, Reserved 8
    assert len(pdu) == 12 + 65 + 60 + 8
    assert _field(pdu, 8, 21) == b"1065712345" + b"\0" * 11  # Dest_Id
    assert _field(pdu, 42, 21) == b"13800138000" + b"\0" * 10  # Src_terminal_Id
    assert _field(pdu, 63, 1) == b"\x01"  # Registered_Delivery
    assert _field(pdu, 64, 1) == bytes([60])  # Msg_Length
    assert _field(pdu, 65, 60) == content
    assert c.decode_deliver(pdu[12:], V2) == d
    assert c.decode_status_report(content, V2) == report


def test_deliver_3_0_layout_and_mo() -> None:
    report = c.StatusReport(5, "UNDELIV", "2603011200", "2603011201", "13800138000", 1)
    content = c.encode_status_report(report, V3)
    assert len(content) == 71
    assert content[35:67] == b"13800138000" + b"\0" * 21  # Dest_terminal_Id (32)
    assert c.decode_status_report(content, V3) == report
    mo = c.Deliver(77, "106571234501", "13900139000", "退订".encode("utf-16-be"), link_id="LNK")
    pdu = c.encode_deliver(4, mo, V3)
    # spec 3.0: Src_terminal_Id 32 + Src_terminal_type, LinkID 20
    assert len(pdu) == 12 + 77 + 4 + 20
    assert _field(pdu, 42, 32) == b"13900139000" + b"\0" * 21
    assert _field(pdu, 74, 1) == b"\0"  # Src_terminal_type
    assert _field(pdu, 75, 1) == b"\0"  # Registered_Delivery: an MO
    assert c.decode_deliver(pdu[12:], V3) == mo
    assert c.decode_text(mo.content, mo.msg_fmt, mo.udhi) == (b"", "退订")
    resp = c.encode_deliver_resp(4, 77, 0, V3)
    assert len(resp) == 12 + 8 + 4 and c.decode_deliver_resp(resp[12:], V3) == c.SubmitResp(77, 0)
    assert len(c.encode_deliver_resp(4, 77, 0, V2)) == 12 + 8 + 1


def test_heartbeat_and_terminate() -> None:
    assert c.encode_active_test(1) == bytes.fromhex("0000000c0000000800000001")
    assert c.encode_active_test_resp(1) == bytes.fromhex("0000000d8000000800000001") + b"\0"
    assert c.encode_terminate(2) == bytes.fromhex("0000000c0000000200000002")
    assert c.encode_terminate_resp(2) == bytes.fromhex("0000000c8000000200000002")


def test_truncated_and_malformed_pdus_are_refused() -> None:
    s = c.Submit("13800138000", b"hi", msg_fmt=0)
    for version in (V2, V3):
        body = c.encode_submit(1, s, version)[12:]
        for cut in (0, 5, 60, len(body) - 1):
            with pytest.raises(c.CmppDecodeError, match="truncated"):
                c.decode_submit(body[:cut], version)
        with pytest.raises(c.CmppDecodeError, match="unexpected bytes"):
            c.decode_submit(body + b"x", version)
    with pytest.raises(c.CmppDecodeError, match="truncated"):
        c.decode_header(b"\0\0\0")
    with pytest.raises(c.CmppDecodeError, match="shorter than the header"):
        c.decode_header(bytes.fromhex("000000050000000100000001"))
    with pytest.raises(c.CmppDecodeError, match="truncated"):
        c.decode_status_report(b"\0" * 59, V2)
    with pytest.raises(c.CmppDecodeError, match="truncated"):
        c.decode_submit_resp(b"\0" * 11, V3)
    with pytest.raises(c.CmppDecodeError, match="UDH"):
        c.decode_text(b"\x05\x00", 8, True)
    with pytest.raises(ValueError, match="at most 21"):
        c.encode_submit(1, c.Submit("1" * 22, b""), V2)
    with pytest.raises(ValueError, match="version"):
        c.encode_submit(1, s, 0x31)


def test_result_and_status_names() -> None:
    assert "流量控制" in c.result_name(8, 0x20) and "流量控制" in c.result_name(8, 0x30)
    assert "Dest_terminal_Id" in c.result_name(13, 0x30) and c.result_name(13, 0x20).startswith("其他错误")
    assert c.result_name(200, 0x30).startswith("其他错误") and c.result_name(9, 0x21).startswith("其他错误")
    assert "认证" in c.connect_status_name(3)
    assert [k for k in c.CONNECT_STATUS if k] == [1, 2, 3, 4, 5]

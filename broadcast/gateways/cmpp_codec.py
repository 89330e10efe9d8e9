"""CMPP 2.0 / 3.0 PDUs as bytes: one encode and one decode function per PDU type. Pure: no I/O.

China Mobile's CMPP (research notes: ../shared/research/channels-and-inbound.md §4,
gateway-protocols.md §5.2). Every PDU is a 12-byte header ``Total_Length`` ``Command_Id``
``Sequence_Id`` (uint32, big-endian) and a body; a response's id is ``0x80000000 | id``. The
``version`` argument is the protocol version byte: ``0x20``/``0x21`` (2.0) or ``0x30`` (3.0); 3.0
widens terminal ids from 21 to 32 bytes (plus a type byte), a CONNECT_RESP status and a SUBMIT_RESP /
DELIVER_RESP result from 1 to 4 bytes, and puts a 20-byte LinkID where 2.0 had an 8-byte Reserve.

Fixed-size strings are ASCII, NUL-padded on the right; decoding strips the padding. A ``Msg_Id`` is
a uint64 on the wire; the rest of the code stores it as its decimal string (``msg_id_str``).

``encode_*(seq, …)`` return a whole PDU (header included); ``decode_*(body, …)`` take the body
after the header. Bad input raises ``CmppDecodeError`` (a ``ValueError``) saying what was wrong.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "ACTIVE_TEST", "CONNECT", "CONNECT_STATUS", "DELIVER", "HEADER_LEN", "RESP", "RESULTS", "RESULTS_V2", "SUBMIT",
    "TERMINATE",
    "CmppDecodeError", "ConnectResp", "Deliver", "Header", "StatusReport", "Submit", "SubmitResp", "SubmitTemplate",
    "authenticator_ismg", "authenticator_source", "connect_status_name", "decode_connect", "decode_connect_resp",
    "decode_deliver", "decode_deliver_resp", "decode_header", "decode_status_report", "decode_submit",
    "decode_submit_resp", "decode_text", "encode_active_test", "encode_active_test_resp", "encode_connect", "encode_connect_resp",
    "encode_deliver", "encode_deliver_resp", "encode_status_report", "encode_submit", "encode_submit_resp",
    "encode_terminate", "encode_terminate_resp", "is_v3", "msg_id_str", "result_name", "timestamp_of",
]

HEADER_LEN = 12
RESP = 0x8000_0000
CONNECT, TERMINATE, SUBMIT, DELIVER, QUERY, CANCEL, ACTIVE_TEST, FWD = 0x1, 0x2, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9
VERSIONS = (0x20, 0x21, 0x30)
MAX_CONTENT = 255  # Msg_Length is one octet (a part is at most 140 octets on the air)

#: SUBMIT_RESP / DELIVER_RESP Result codes of CMPP 2.0: 0-8 are named, "9~: 其他错误" (any other
#: value, an ISMG vendor's own included, is "other error").
RESULTS_V2: dict[int, str] = {
    0: "正确 (ok)",
    1: "消息结构错 (bad message structure)",
    2: "命令字错 (bad command id)",
    3: "消息序号重复 (duplicate sequence id)",
    4: "消息长度错 (bad message length)",
    5: "资费代码错 (bad fee code)",
    6: "超过最大信息长 (message too long)",
    7: "业务代码错 (bad service id)",
    8: "流量控制错 (flow control: too fast)",
}
#: CMPP 3.0 names 9-13 too (its Result is 4 octets; anything else is still "other error").
RESULTS: dict[int, str] = {
    **RESULTS_V2,
    9: "本网关不负责服务此计费号码 (this gateway does not serve the charged number)",
    10: "Src_Id错误 (bad source id)",
    11: "Msg_src错误 (bad Msg_src)",
    12: "Fee_terminal_Id错误 (bad charged number)",
    13: "Dest_terminal_Id错误 (bad destination number)",
}
#: CONNECT_RESP Status codes.
CONNECT_STATUS: dict[int, str] = {
    0: "正确 (ok)",
    1: "消息结构错 (bad message structure)",
    2: "非法源地址 (bad source address)",
    3: "认证错 (authentication failed)",
    4: "版本太高 (version too high)",
    5: "其他错误 (other error)",
}


class CmppDecodeError(ValueError):
    """Bytes that are not the CMPP PDU they were taken for (truncated, wrong length, bad field)."""


def result_name(code: int, version: int) -> str:
    """A SUBMIT_RESP / DELIVER_RESP Result in words, as the ``version`` (0x20/0x21/0x30) names it."""
    return (RESULTS if is_v3(version) else RESULTS_V2).get(code, "其他错误 (other error)")


def connect_status_name(code: int) -> str:
    return CONNECT_STATUS.get(code, "其他错误 (other error)")


def is_v3(version: int) -> bool:
    if version not in VERSIONS:
        raise ValueError(f"CMPP version byte must be one of 0x20, 0x21, 0x30, not {version:#x}")
    return version >= 0x30


def msg_id_str(msg_id: int) -> str:
    """The Msg_Id as the rest of the code stores it: decimal."""
    return str(msg_id)


# ---------------------------------------------------------------------------------------------
# field helpers


def _fixed(value: str | bytes, size: int, field: str) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) else value
    if len(raw) > size:
        raise ValueError(f"{field} is {len(raw)} bytes, at most {size} fit")
    return raw.ljust(size, b"\0")


class _Reader:
    def __init__(self, body: bytes, what: str) -> None:
        self.body, self.pos, self.what = body, 0, what

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.body):
            raise CmppDecodeError(f"{self.what}: truncated at {field} (needs {self.pos + n} bytes, has {len(self.body)})")
        chunk = self.body[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "big")

    def u64(self, field: str) -> int:
        return int.from_bytes(self.take(8, field), "big")

    def text(self, n: int, field: str) -> str:
        raw = self.take(n, field).split(b"\0", 1)[0]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise CmppDecodeError(f"{self.what}: {field} is not ASCII: {raw!r}") from None

    def end(self) -> None:
        if self.pos != len(self.body):
            raise CmppDecodeError(f"{self.what}: {len(self.body) - self.pos} unexpected bytes after the last field")


def _trailer(r: _Reader, v3: bool) -> str:
    """LinkID(20) in 3.0; Reserve(8) in 2.0 (read and dropped)."""
    if v3:
        return r.text(20, "LinkID")
    r.take(8, "Reserve")
    return ""


_HEADER = struct.Struct(">III")


def _pdu(command_id: int, seq: int, body: bytes = b"") -> bytes:
    return _HEADER.pack(HEADER_LEN + len(body), command_id, seq & 0xFFFF_FFFF) + body


def _result(value: int, v3: bool) -> bytes:
    return value.to_bytes(4 if v3 else 1, "big")


# ---------------------------------------------------------------------------------------------
# header


@dataclass(frozen=True)
class Header:
    total_length: int
    command_id: int
    seq: int


def decode_header(head: bytes) -> Header:
    if len(head) < HEADER_LEN:
        raise CmppDecodeError(f"CMPP header: truncated ({len(head)} of {HEADER_LEN} bytes)")
    total, command_id, seq = struct.unpack(">III", head[:HEADER_LEN])
    if total < HEADER_LEN:
        raise CmppDecodeError(f"CMPP header: Total_Length {total} is shorter than the header")
    return Header(total, command_id, seq)


# ---------------------------------------------------------------------------------------------
# CONNECT / CONNECT_RESP


def timestamp_of(now: datetime) -> int:
    """The CONNECT Timestamp: ``MMDDHHMMSS`` as an integer."""
    return int(now.strftime("%m%d%H%M%S"))


def authenticator_source(source_addr: str, secret: str, timestamp: int) -> bytes:
    """MD5(Source_Addr + 9 zero bytes + shared secret + "MMDDHHMMSS")."""
    return hashlib.md5(source_addr.encode("ascii") + b"\0" * 9 + secret.encode("utf-8")
                       + f"{timestamp:010d}".encode("ascii")).digest()


def authenticator_ismg(status: int, auth_source: bytes, secret: str, version: int) -> bytes:
    """MD5(Status + AuthenticatorSource + shared secret); Status 1 byte in 2.0, 4 bytes in 3.0."""
    return hashlib.md5(_result(status, is_v3(version)) + auth_source + secret.encode("utf-8")).digest()


@dataclass(frozen=True)
class Connect:
    source_addr: str
    authenticator: bytes
    version: int
    timestamp: int


def encode_connect(seq: int, source_addr: str, secret: str, version: int, timestamp: int) -> bytes:
    is_v3(version)
    auth = authenticator_source(source_addr, secret, timestamp)
    body = _fixed(source_addr, 6, "Source_Addr") + auth + bytes([version]) + struct.pack(">I", timestamp)
    return _pdu(CONNECT, seq, body)


def decode_connect(body: bytes) -> Connect:
    r = _Reader(body, "CMPP_CONNECT")
    c = Connect(r.text(6, "Source_Addr"), r.take(16, "AuthenticatorSource"), r.u8("Version"), r.u32("Timestamp"))
    r.end()
    return c


@dataclass(frozen=True)
class ConnectResp:
    status: int
    authenticator: bytes
    version: int


def encode_connect_resp(seq: int, status: int, authenticator: bytes, version: int) -> bytes:
    if len(authenticator) != 16:
        raise ValueError("AuthenticatorISMG must be 16 bytes")
    return _pdu(CONNECT | RESP, seq, _result(status, is_v3(version)) + authenticator + bytes([version]))


def decode_connect_resp(body: bytes, version: int) -> ConnectResp:
    v3 = is_v3(version)
    r = _Reader(body, "CMPP_CONNECT_RESP")
    status = r.u32("Status") if v3 else r.u8("Status")
    resp = ConnectResp(status, r.take(16, "AuthenticatorISMG"), r.u8("Version"))
    r.end()
    return resp


# ---------------------------------------------------------------------------------------------
# TERMINATE, ACTIVE_TEST


def encode_terminate(seq: int) -> bytes:
    return _pdu(TERMINATE, seq)


def encode_terminate_resp(seq: int) -> bytes:
    return _pdu(TERMINATE | RESP, seq)


def encode_active_test(seq: int) -> bytes:
    return _pdu(ACTIVE_TEST, seq)


def encode_active_test_resp(seq: int) -> bytes:
    return _pdu(ACTIVE_TEST | RESP, seq, b"\0")  # Reserved(1)


# ---------------------------------------------------------------------------------------------
# SUBMIT / SUBMIT_RESP


@dataclass(frozen=True)
class Submit:
    """One CMPP_SUBMIT to one destination (DestUsr_tl = 1)."""

    dest: str
    content: bytes
    msg_fmt: int = 8  # 0 ASCII, 8 UCS-2, 15 GBK
    udhi: bool = False
    pk_total: int = 1
    pk_number: int = 1
    service_id: str = ""
    msg_src: str = ""  # the SP id
    src_id: str = ""  # the SP's service number + extension
    registered_delivery: int = 1
    msg_level: int = 0
    fee_user_type: int = 0
    fee_terminal: str = ""
    fee_type: str = "01"  # free
    fee_code: str = ""
    valid_time: str = ""
    at_time: str = ""
    tp_pid: int = 0
    link_id: str = ""  # 3.0 only
    msg_id: int = 0


#: The SUBMIT up to Msg_Content, header included (one pack a submit; ``s`` pads with NULs):
#: Msg_Id Pk_total Pk_number Registered_Delivery Msg_level Service_Id Fee_UserType Fee_terminal_Id
#: [Fee_terminal_type] TP_pId TP_udhi Msg_Fmt Msg_src FeeType FeeCode ValId_Time At_Time Src_Id
#: DestUsr_tl Dest_terminal_Id [Dest_terminal_type] Msg_Length
_SUBMIT_HEAD = {False: struct.Struct(">IIIQBBBB10sB21sBBB6s2s6s17s17s21sB21sB"),
                True: struct.Struct(">IIIQBBBB10sB32sBBBB6s2s6s17s17s21sB32sBB")}
_SUBMIT_SIZES = (("Service_Id", 10), ("Msg_src", 6), ("FeeType", 2), ("FeeCode", 6), ("ValId_Time", 17),
                 ("At_Time", 17), ("Src_Id", 21))


class SubmitTemplate:
    """A SUBMIT of one part to any destination: the fields before and after ``Dest_terminal_Id``
    packed once, so each PDU is a header pack and a join (a message goes to many people)."""

    __slots__ = ("after", "before", "tid", "total")

    def __init__(self, s: Submit, version: int) -> None:
        v3 = is_v3(version)
        self.tid = tid = 32 if v3 else 21
        if len(s.content) > MAX_CONTENT:
            raise ValueError(f"Msg_Content is {len(s.content)} octets, at most {MAX_CONTENT} fit")
        fields = [_ascii(v) for v in (s.service_id, s.msg_src, s.fee_type, s.fee_code, s.valid_time, s.at_time,
                                      s.src_id)]
        fee_terminal = _ascii(s.fee_terminal)
        for (name, size), raw in zip((*_SUBMIT_SIZES, ("Fee_terminal_Id", tid)), (*fields, fee_terminal)):
            if len(raw) > size:
                raise ValueError(f"{name} is {len(raw)} bytes, at most {size} fit")
        service_id, msg_src, fee_type, fee_code, valid_time, at_time, src_id = fields
        tail = _fixed(s.link_id, 20, "LinkID") if v3 else b"\0" * 8
        head = _SUBMIT_HEAD[v3]
        self.total = total = head.size + len(s.content) + len(tail)
        typed = (0,) if v3 else ()  # 3.0: Fee_terminal_type, Dest_terminal_type after the ids
        packed = head.pack(total, SUBMIT, 0, s.msg_id, s.pk_total, s.pk_number, s.registered_delivery, s.msg_level,
                           service_id, s.fee_user_type, fee_terminal, *typed, s.tp_pid, int(s.udhi), s.msg_fmt,
                           msg_src, fee_type, fee_code, valid_time, at_time, src_id, 1, b"", *typed, len(s.content))
        at = head.size - 1 - (1 if v3 else 0) - tid  # Dest_terminal_Id [Dest_terminal_type] Msg_Length end the struct
        self.before, self.after = packed[HEADER_LEN:at], packed[at + tid:] + s.content + tail

    def pdu(self, seq: int, dest: str) -> bytes:
        raw = dest.encode("ascii")
        if len(raw) > self.tid:
            raise ValueError(f"Dest_terminal_Id is {len(raw)} bytes, at most {self.tid} fit")
        return self.packed(seq, raw.ljust(self.tid, b"\0"))

    def packed(self, seq: int, dest_field: bytes) -> bytes:
        """``pdu`` with Dest_terminal_Id already padded to ``tid`` octets (not checked again)."""
        return b"".join((_HEADER.pack(self.total, SUBMIT, seq & 0xFFFF_FFFF), self.before, dest_field, self.after))


def encode_submit(seq: int, s: Submit, version: int) -> bytes:
    return SubmitTemplate(s, version).pdu(seq, s.dest)


def _ascii(value: str | bytes) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else value


def decode_submit(body: bytes, version: int) -> Submit:
    """A SUBMIT with one destination (a SUBMIT to several numbers is refused)."""
    v3 = is_v3(version)
    tid = 32 if v3 else 21
    r = _Reader(body, "CMPP_SUBMIT")
    msg_id, pk_total, pk_number = r.u64("Msg_Id"), r.u8("Pk_total"), r.u8("Pk_number")
    registered, level, service_id = r.u8("Registered_Delivery"), r.u8("Msg_level"), r.text(10, "Service_Id")
    fee_user_type, fee_terminal = r.u8("Fee_UserType"), r.text(tid, "Fee_terminal_Id")
    if v3:
        r.u8("Fee_terminal_type")
    tp_pid, udhi, msg_fmt = r.u8("TP_pId"), r.u8("TP_udhi"), r.u8("Msg_Fmt")
    msg_src, fee_type, fee_code = r.text(6, "Msg_src"), r.text(2, "FeeType"), r.text(6, "FeeCode")
    valid_time, at_time, src_id = r.text(17, "ValId_Time"), r.text(17, "At_Time"), r.text(21, "Src_Id")
    n = r.u8("DestUsr_tl")
    if n != 1:
        raise CmppDecodeError(f"CMPP_SUBMIT: DestUsr_tl is {n}; one destination per submit is supported")
    dest = r.text(tid, "Dest_terminal_Id")
    if v3:
        r.u8("Dest_terminal_type")
    content = r.take(r.u8("Msg_Length"), "Msg_Content")
    link_id = _trailer(r, v3)
    r.end()
    return Submit(dest, content, msg_fmt, bool(udhi), pk_total, pk_number, service_id, msg_src, src_id, registered,
                  level, fee_user_type, fee_terminal, fee_type, fee_code, valid_time, at_time, tp_pid, link_id, msg_id)


@dataclass(frozen=True)
class SubmitResp:
    msg_id: int
    result: int


def encode_submit_resp(seq: int, msg_id: int, result: int, version: int) -> bytes:
    return _pdu(SUBMIT | RESP, seq, struct.pack(">Q", msg_id) + _result(result, is_v3(version)))


def decode_submit_resp(body: bytes, version: int) -> SubmitResp:
    r = _Reader(body, "CMPP_SUBMIT_RESP")
    resp = SubmitResp(r.u64("Msg_Id"), r.u32("Result") if is_v3(version) else r.u8("Result"))
    r.end()
    return resp


# ---------------------------------------------------------------------------------------------
# DELIVER / DELIVER_RESP and the status report carried in a DELIVER


@dataclass(frozen=True)
class Deliver:
    """A CMPP_DELIVER: a mobile-originated message, or a status report when ``registered_delivery`` is 1."""

    msg_id: int
    dest_id: str  # our service number (+ extension) the handset wrote to
    src_terminal: str  # the handset
    content: bytes
    registered_delivery: int = 0
    msg_fmt: int = 8
    udhi: bool = False
    service_id: str = ""
    tp_pid: int = 0
    link_id: str = ""  # 3.0 only


def encode_deliver(seq: int, d: Deliver, version: int) -> bytes:
    v3 = is_v3(version)
    if len(d.content) > MAX_CONTENT:
        raise ValueError(f"Msg_Content is {len(d.content)} octets, at most {MAX_CONTENT} fit")
    body = b"".join([
        struct.pack(">Q", d.msg_id),
        _fixed(d.dest_id, 21, "Dest_Id"),
        _fixed(d.service_id, 10, "Service_Id"),
        bytes([d.tp_pid, int(d.udhi), d.msg_fmt]),
        _fixed(d.src_terminal, 32 if v3 else 21, "Src_terminal_Id"),
        b"\0" if v3 else b"",  # Src_terminal_type
        bytes([d.registered_delivery, len(d.content)]),
        d.content,
        _fixed(d.link_id, 20, "LinkID") if v3 else b"\0" * 8,
    ])
    return _pdu(DELIVER, seq, body)


def decode_deliver(body: bytes, version: int) -> Deliver:
    v3 = is_v3(version)
    r = _Reader(body, "CMPP_DELIVER")
    msg_id, dest_id, service_id = r.u64("Msg_Id"), r.text(21, "Dest_Id"), r.text(10, "Service_Id")
    tp_pid, udhi, msg_fmt = r.u8("TP_pid"), r.u8("TP_udhi"), r.u8("Msg_Fmt")
    src = r.text(32 if v3 else 21, "Src_terminal_Id")
    if v3:
        r.u8("Src_terminal_type")
    registered = r.u8("Registered_Delivery")
    content = r.take(r.u8("Msg_Length"), "Msg_Content")
    link_id = _trailer(r, v3)
    r.end()
    return Deliver(msg_id, dest_id, src, content, registered, msg_fmt, bool(udhi), service_id, tp_pid, link_id)


@dataclass(frozen=True)
class StatusReport:
    """The Msg_Content of a status-report DELIVER (60 bytes in 2.0, 71 in 3.0)."""

    msg_id: int  # the Msg_Id our SUBMIT_RESP carried
    stat: str  # DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD, or an operator's code
    submit_time: str  # YYMMDDHHMM
    done_time: str
    dest_terminal: str
    smsc_sequence: int = 0


def encode_status_report(r: StatusReport, version: int) -> bytes:
    return b"".join([
        struct.pack(">Q", r.msg_id), _fixed(r.stat, 7, "Stat"), _fixed(r.submit_time, 10, "Submit_time"),
        _fixed(r.done_time, 10, "Done_time"), _fixed(r.dest_terminal, 32 if is_v3(version) else 21, "Dest_terminal_Id"),
        struct.pack(">I", r.smsc_sequence),
    ])


def decode_status_report(content: bytes, version: int) -> StatusReport:
    r = _Reader(content, "CMPP status report")
    report = StatusReport(r.u64("Msg_Id"), r.text(7, "Stat"), r.text(10, "Submit_time"), r.text(10, "Done_time"),
                          r.text(32 if is_v3(version) else 21, "Dest_terminal_Id"), r.u32("SMSC_sequence"))
    r.end()
    return report


def encode_deliver_resp(seq: int, msg_id: int, result: int, version: int) -> bytes:
    return _pdu(DELIVER | RESP, seq, struct.pack(">Q", msg_id) + _result(result, is_v3(version)))


def decode_text(content: bytes, msg_fmt: int, udhi: bool) -> tuple[bytes, str]:
    """(UDH, text) of a Msg_Content: UCS-2 (8), ASCII (0), GBK (15); other formats as Latin-1."""
    udh = b""
    if udhi:
        if not content or len(content) < content[0] + 1:
            raise CmppDecodeError("Msg_Content: TP_udhi is set but the UDH is truncated")
        udh, content = content[:content[0] + 1], content[content[0] + 1:]
    codec = {8: "utf-16-be", 0: "ascii", 15: "gbk"}.get(msg_fmt, "latin-1")
    try:
        return udh, content.decode(codec)
    except UnicodeDecodeError as exc:
        raise CmppDecodeError(f"Msg_Content is not valid for Msg_Fmt {msg_fmt}: {exc}") from None


def decode_deliver_resp(body: bytes, version: int) -> SubmitResp:
    r = _Reader(body, "CMPP_DELIVER_RESP")
    resp = SubmitResp(r.u64("Msg_Id"), r.u32("Result") if is_v3(version) else r.u8("Result"))
    r.end()
    return resp

"""SMPP 3.4 PDUs as bytes: one encode/decode function per PDU broadcast uses. Pure: no I/O.

Every PDU is a 16-byte header — ``command_length`` (the whole PDU, header included),
``command_id``, ``command_status``, ``sequence_number``, four big-endian uint32 — then a body of
mandatory fields (integers, C-octet strings ending in NUL, and ``short_message`` of
``sm_length`` octets) and optional TLVs (tag uint16, length uint16, value). SMPP 3.4 §2.2, §3, §4, §5.

Why our own codec and not aiosmpplib (0.7.4, the one maintained asyncio SMPP library on PyPI): its
``protocol`` module does encode/decode without its ESME machinery, but decoding turns every
command_id, command_status and TON/NPI into an ``IntEnum`` and raises for anything not listed — a
vendor-specific status (0x400–0x4FF, which SMSCs do return) or an unknown command cannot even be
read, so it could not be answered with generic_nack; it decodes short_message to ``str`` (the raw
octets and the UDH are gone), takes text to encode rather than our pre-split parts, raises
``struct.error``/``IndexError``/``ValueError`` by turns on a truncated PDU, and its receipt parser
fails on 12-digit dates. The session layer owns the connection, so only the codec was wanted, and
it is ~300 lines of struct.

Decoders take a whole PDU (as ``SessionPool`` delivers it: ``Frame.raw``) and raise ``PduError``
(a ``ValueError``) for anything truncated or malformed, never ``struct.error`` or ``IndexError``.
Strings are ASCII on the wire (Latin-1 decoding, so a stray octet never raises).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

HEADER_LEN: Final = 16
INTERFACE_VERSION: Final = 0x34
RESPONSE_BIT: Final = 0x80000000

# -- command ids (§5.1.2) ---------------------------------------------------------------------
GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_RECEIVER_RESP: Final = 0x80000001
BIND_TRANSMITTER: Final = 0x00000002
BIND_TRANSMITTER_RESP: Final = 0x80000002
QUERY_SM: Final = 0x00000003
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
DATA_SM: Final = 0x00000103
DATA_SM_RESP: Final = 0x80000103

BINDS: Final = {"transceiver": BIND_TRANSCEIVER, "transmitter": BIND_TRANSMITTER, "receiver": BIND_RECEIVER}

# -- command_status (§5.1.3) ------------------------------------------------------------------
STATUS_NAMES: Final[dict[int, str]] = {
    0x00: "ESME_ROK", 0x01: "ESME_RINVMSGLEN", 0x02: "ESME_RINVCMDLEN", 0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS", 0x05: "ESME_RALYBND", 0x06: "ESME_RINVPRTFLG", 0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR", 0x0A: "ESME_RINVSRCADR", 0x0B: "ESME_RINVDSTADR", 0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL", 0x0E: "ESME_RINVPASWD", 0x0F: "ESME_RINVSYSID", 0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL", 0x14: "ESME_RMSGQFUL", 0x15: "ESME_RINVSERTYP", 0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME", 0x40: "ESME_RINVDESTFLAG", 0x42: "ESME_RINVSUBREP", 0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL", 0x45: "ESME_RSUBMITFAIL", 0x48: "ESME_RINVSRCTON", 0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON", 0x51: "ESME_RINVDSTNPI", 0x53: "ESME_RINVSYSTYP", 0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS", 0x58: "ESME_RTHROTTLED", 0x61: "ESME_RINVSCHED", 0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID", 0x64: "ESME_RX_T_APPN", 0x65: "ESME_RX_P_APPN", 0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL", 0xC0: "ESME_RINVOPTPARSTREAM", 0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN", 0xC3: "ESME_RMISSINGOPTPARAM", 0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE", 0xFF: "ESME_RUNKNOWNERR",
}
STATUS: Final[dict[str, int]] = {name: code for code, name in STATUS_NAMES.items()}
ESME_ROK: Final = 0x00
ESME_RINVCMDID: Final = 0x03


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED`` for 0x58; ``vendor 0x00000400`` / ``0x00000099`` for codes not in 3.4's table."""
    if status in STATUS_NAMES:
        return STATUS_NAMES[status]
    kind = "vendor " if 0x400 <= status <= 0x4FF else ""
    return f"{kind}0x{status:08X}"


# -- esm_class, data_coding, TLVs, message_state ------------------------------------------------
ESM_UDHI: Final = 0x40  # short_message starts with a User Data Header
ESM_RECEIPT: Final = 0x04  # deliver_sm: SMSC delivery receipt (message type bits 2-5 = 0001)
ESM_TYPE_MASK: Final = 0x3C

TLV_RECEIPTED_MESSAGE_ID: Final = 0x001E
TLV_MESSAGE_STATE: Final = 0x0427
TLV_NETWORK_ERROR_CODE: Final = 0x0423
TLV_MESSAGE_PAYLOAD: Final = 0x0424
TLV_SC_INTERFACE_VERSION: Final = 0x0210
TLV_SAR_MSG_REF_NUM: Final = 0x020C  # a part of a longer message: reference (2 octets),
TLV_SAR_TOTAL_SEGMENTS: Final = 0x020E  # parts (1 octet),
TLV_SAR_SEGMENT_SEQNUM: Final = 0x020F  # this part's number (1 octet)

MESSAGE_STATES: Final[dict[int, str]] = {
    1: "ENROUTE", 2: "DELIVERED", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIVERABLE", 6: "ACCEPTED",
    7: "UNKNOWN", 8: "REJECTED",
}

# Field limits (§4, max lengths including the NUL).
_MAX = {"system_id": 16, "password": 9, "system_type": 13, "address_range": 41, "service_type": 6,
        "addr": 21, "addr65": 65, "message_id": 65}  # addr65: data_sm's addresses


_HEADER = struct.Struct(">IIII")


class PduError(ValueError):
    """A PDU that is truncated, over-long or malformed (the one error every decoder raises)."""


@dataclass(frozen=True)
class Header:
    length: int
    command_id: int
    status: int
    seq: int


# -- header --------------------------------------------------------------------------------------

def encode_pdu(command_id: int, seq: int, body: bytes = b"", status: int = ESME_ROK) -> bytes:
    """Header + body; ``command_length`` counted here."""
    if not 0 <= seq <= 0xFFFFFFFF:
        raise ValueError(f"sequence_number out of range: {seq}")
    return struct.pack(">IIII", HEADER_LEN + len(body), command_id, status, seq) + body


def decode_header(data: bytes) -> Header:
    """The header at the start of ``data`` (at least 16 bytes; ``command_length`` >= 16)."""
    if len(data) < HEADER_LEN:
        raise PduError(f"truncated header: {len(data)} of {HEADER_LEN} bytes")
    length, command_id, status, seq = struct.unpack_from(">IIII", data)
    if length < HEADER_LEN:
        raise PduError(f"command_length {length} is below the {HEADER_LEN}-byte header")
    return Header(length, command_id, status, seq)


def split_pdu(pdu: bytes, expect: int | None = None) -> tuple[Header, bytes]:
    """(header, body) of one whole PDU; its length must match ``command_length`` exactly."""
    head = decode_header(pdu)
    if head.length != len(pdu):
        raise PduError(f"command_length {head.length} but {len(pdu)} bytes: truncated or trailing data")
    if expect is not None and head.command_id != expect:
        raise PduError(f"command_id 0x{head.command_id:08X}, expected 0x{expect:08X}")
    return head, pdu[HEADER_LEN:]


class _Reader:
    """Reads fields of a PDU body in order; every shortfall is a ``PduError``."""

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def uint(self, size: int = 1) -> int:
        end = self.pos + size
        if end > len(self.body):
            raise PduError(f"truncated body: a {size}-byte integer at offset {self.pos}")
        value = int.from_bytes(self.body[self.pos:end], "big")
        self.pos = end
        return value

    def cstr(self, name: str, limit: int | None = None) -> str:
        end = self.body.find(b"\0", self.pos)
        if end < 0:
            raise PduError(f"truncated body: {name} has no terminating NUL")
        if limit is not None and end - self.pos >= limit:
            raise PduError(f"{name} longer than {limit - 1} octets")
        value = self.body[self.pos:end].decode("latin-1")
        self.pos = end + 1
        return value

    def octets(self, size: int, name: str) -> bytes:
        end = self.pos + size
        if end > len(self.body):
            raise PduError(f"truncated body: {name} needs {size} octets, {len(self.body) - self.pos} left")
        value = self.body[self.pos:end]
        self.pos = end
        return value

    def tlvs(self) -> tuple[tuple[int, bytes], ...]:
        out: list[tuple[int, bytes]] = []
        while self.pos < len(self.body):
            tag = self.uint(2)
            size = self.uint(2)
            out.append((tag, self.octets(size, f"TLV 0x{tag:04X}")))
        return tuple(out)


def _cstr(value: str, name: str) -> bytes:
    raw = value.encode("ascii")
    if b"\0" in raw:
        raise ValueError(f"{name} may not contain NUL")
    if len(raw) >= _MAX.get(name, 1 << 16):
        raise ValueError(f"{name} is longer than {_MAX[name] - 1} characters (SMPP 3.4)")
    return raw + b"\0"


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def tlv_value(tlvs: tuple[tuple[int, bytes], ...], tag: int) -> bytes | None:
    return next((v for t, v in tlvs if t == tag), None)


# -- bind_* / bind_*_resp (§4.1) --------------------------------------------------------------

@dataclass(frozen=True)
class Bind:
    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


def encode_bind(command_id: int, seq: int, bind: Bind) -> bytes:
    """bind_transceiver / bind_transmitter / bind_receiver (``command_id`` from ``BINDS``)."""
    if command_id not in BINDS.values():
        raise ValueError(f"not a bind command: 0x{command_id:08X}")
    body = (_cstr(bind.system_id, "system_id") + _cstr(bind.password, "password")
            + _cstr(bind.system_type, "system_type")
            + bytes([bind.interface_version, bind.addr_ton, bind.addr_npi])
            + _cstr(bind.address_range, "address_range"))
    return encode_pdu(command_id, seq, body)


def decode_bind(pdu: bytes) -> tuple[Header, Bind]:
    head, body = split_pdu(pdu)
    if head.command_id not in BINDS.values():
        raise PduError(f"not a bind PDU: 0x{head.command_id:08X}")
    r = _Reader(body)
    bind = Bind(r.cstr("system_id"), r.cstr("password"), r.cstr("system_type"), r.uint(), r.uint(), r.uint(),
                r.cstr("address_range"))
    return head, bind


def encode_bind_resp(command_id: int, seq: int, system_id: str, status: int = ESME_ROK) -> bytes:
    """``command_id`` is the bind's (the response bit is set here)."""
    return encode_pdu(command_id | RESPONSE_BIT, seq, _cstr(system_id, "system_id"), status)


def decode_bind_resp(pdu: bytes) -> tuple[Header, str]:
    """(header, the SMSC's system_id); an error answer may carry no body at all."""
    head, body = split_pdu(pdu)
    if head.command_id not in {c | RESPONSE_BIT for c in BINDS.values()}:
        raise PduError(f"not a bind response: 0x{head.command_id:08X}")
    if not body:
        return head, ""
    r = _Reader(body)
    system_id = r.cstr("system_id")
    r.tlvs()  # sc_interface_version, if any: read to check the PDU, not needed
    return head, system_id


# -- submit_sm / deliver_sm (§4.4, §4.6: the same body layout) ------------------------------------

@dataclass(frozen=True)
class ShortMessage:
    """The body of submit_sm and deliver_sm. ``short_message``: octets as sent, UDH included."""

    destination_addr: str
    short_message: bytes = b""
    source_addr: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    service_type: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 1
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: tuple[tuple[int, bytes], ...] = field(default=())

    def tlv(self, tag: int) -> bytes | None:
        return tlv_value(self.tlvs, tag)


class SmTemplate:
    """A submit_sm (or deliver_sm) of one text and sender, to any destination: everything but the
    sequence number and ``destination_addr`` (and its TON/NPI) is packed once (a message goes to
    many people: each PDU is then one struct pack and a join)."""

    __slots__ = ("after", "before", "command_id", "fixed")

    def __init__(self, command_id: int, sm: ShortMessage) -> None:
        if len(sm.short_message) > 254:
            raise ValueError(f"short_message is {len(sm.short_message)} octets; at most 254 (use segments)")
        self.command_id = command_id
        self.before = (_cstr(sm.service_type, "service_type") + bytes([sm.source_addr_ton, sm.source_addr_npi])
                       + _cstr(sm.source_addr, "addr"))
        self.after = (bytes([sm.esm_class, sm.protocol_id, sm.priority_flag])
                      + _cstr(sm.schedule_delivery_time, "time") + _cstr(sm.validity_period, "time")
                      + bytes([sm.registered_delivery, sm.replace_if_present_flag, sm.data_coding,
                               sm.sm_default_msg_id, len(sm.short_message)])
                      + sm.short_message + b"".join(_tlv(t, v) for t, v in sm.tlvs))
        self.fixed = HEADER_LEN + len(self.before) + 3 + len(self.after)  # + the address's octets

    def pdu(self, seq: int, dest_ton: int, dest_npi: int, dest: str) -> bytes:
        raw = dest.encode("ascii")
        if len(raw) > _MAX["addr"] - 1 or b"\0" in raw:
            _cstr(dest, "addr")  # says which
        if not 0 <= seq <= 0xFFFFFFFF:
            raise ValueError(f"sequence_number out of range: {seq}")
        return b"".join((_HEADER.pack(self.fixed + len(raw), self.command_id, ESME_ROK, seq), self.before,
                         bytes((dest_ton, dest_npi)), raw, b"\0", self.after))


def _encode_sm(command_id: int, seq: int, sm: ShortMessage) -> bytes:
    return SmTemplate(command_id, sm).pdu(seq, sm.dest_addr_ton, sm.dest_addr_npi, sm.destination_addr)


def _decode_sm(pdu: bytes, command_id: int) -> tuple[Header, ShortMessage]:
    head, body = split_pdu(pdu, command_id)
    r = _Reader(body)
    service_type = r.cstr("service_type")
    src_ton, src_npi = r.uint(), r.uint()
    source = r.cstr("source_addr")
    dst_ton, dst_npi = r.uint(), r.uint()
    dest = r.cstr("destination_addr")
    esm_class, protocol_id, priority = r.uint(), r.uint(), r.uint()
    schedule, validity = r.cstr("schedule_delivery_time"), r.cstr("validity_period")
    registered, replace, coding, default_id = r.uint(), r.uint(), r.uint(), r.uint()
    text = r.octets(r.uint(), "short_message")
    return head, ShortMessage(
        destination_addr=dest, short_message=text, source_addr=source, source_addr_ton=src_ton,
        source_addr_npi=src_npi, dest_addr_ton=dst_ton, dest_addr_npi=dst_npi, service_type=service_type,
        esm_class=esm_class, protocol_id=protocol_id, priority_flag=priority, schedule_delivery_time=schedule,
        validity_period=validity, registered_delivery=registered, replace_if_present_flag=replace,
        data_coding=coding, sm_default_msg_id=default_id, tlvs=r.tlvs(),
    )


def encode_submit_sm(seq: int, sm: ShortMessage) -> bytes:
    return _encode_sm(SUBMIT_SM, seq, sm)


def decode_submit_sm(pdu: bytes) -> tuple[Header, ShortMessage]:
    return _decode_sm(pdu, SUBMIT_SM)


def encode_deliver_sm(seq: int, sm: ShortMessage) -> bytes:
    return _encode_sm(DELIVER_SM, seq, sm)


def decode_deliver_sm(pdu: bytes) -> tuple[Header, ShortMessage]:
    return _decode_sm(pdu, DELIVER_SM)


def _encode_message_id_resp(command_id: int, seq: int, message_id: str, status: int) -> bytes:
    return encode_pdu(command_id, seq, _cstr(message_id, "message_id"), status)


def _decode_message_id_resp(pdu: bytes, command_id: int) -> tuple[Header, str]:
    head, body = split_pdu(pdu, command_id)
    if not body:  # §4.4.2: an error answer carries no body
        return head, ""
    return head, _Reader(body).cstr("message_id")


def encode_submit_sm_resp(seq: int, message_id: str, status: int = ESME_ROK) -> bytes:
    return _encode_message_id_resp(SUBMIT_SM_RESP, seq, message_id, status)


def decode_submit_sm_resp(pdu: bytes) -> tuple[Header, str]:
    """(header, message_id) — message_id is "" when the SMSC sent no body (error answers)."""
    return _decode_message_id_resp(pdu, SUBMIT_SM_RESP)


def encode_deliver_sm_resp(seq: int, status: int = ESME_ROK) -> bytes:
    return _encode_message_id_resp(DELIVER_SM_RESP, seq, "", status)


def decode_deliver_sm_resp(pdu: bytes) -> tuple[Header, str]:
    return _decode_message_id_resp(pdu, DELIVER_SM_RESP)


# -- data_sm / data_sm_resp (§4.7) ---------------------------------------------------------------
# data_sm: service_type, source TON/NPI/addr, dest TON/NPI/addr, esm_class, registered_delivery,
# data_coding, then TLVs only (the text in message_payload; a receipt's id and state as in
# deliver_sm). Carried here in a ShortMessage whose short_message is empty.

def encode_data_sm(seq: int, sm: ShortMessage) -> bytes:
    body = (_cstr(sm.service_type, "service_type") + bytes([sm.source_addr_ton, sm.source_addr_npi])
            + _cstr(sm.source_addr, "addr65") + bytes([sm.dest_addr_ton, sm.dest_addr_npi])
            + _cstr(sm.destination_addr, "addr65") + bytes([sm.esm_class, sm.registered_delivery, sm.data_coding])
            + b"".join(_tlv(t, v) for t, v in sm.tlvs))
    return encode_pdu(DATA_SM, seq, body)


def decode_data_sm(pdu: bytes) -> tuple[Header, ShortMessage]:
    head, body = split_pdu(pdu, DATA_SM)
    r = _Reader(body)
    service_type = r.cstr("service_type")
    src_ton, src_npi = r.uint(), r.uint()
    source = r.cstr("source_addr", _MAX["addr65"])
    dst_ton, dst_npi = r.uint(), r.uint()
    dest = r.cstr("destination_addr", _MAX["addr65"])
    esm_class, registered, coding = r.uint(), r.uint(), r.uint()
    return head, ShortMessage(
        destination_addr=dest, source_addr=source, source_addr_ton=src_ton, source_addr_npi=src_npi,
        dest_addr_ton=dst_ton, dest_addr_npi=dst_npi, service_type=service_type, esm_class=esm_class,
        registered_delivery=registered, data_coding=coding, tlvs=r.tlvs(),
    )


def encode_data_sm_resp(seq: int, message_id: str = "", status: int = ESME_ROK) -> bytes:
    return _encode_message_id_resp(DATA_SM_RESP, seq, message_id, status)


def decode_data_sm_resp(pdu: bytes) -> tuple[Header, str]:
    return _decode_message_id_resp(pdu, DATA_SM_RESP)


# -- header-only PDUs (§4.2, §4.3, §4.11) ----------------------------------------------------------

def encode_enquire_link(seq: int) -> bytes:
    return encode_pdu(ENQUIRE_LINK, seq)


def encode_enquire_link_resp(seq: int) -> bytes:
    return encode_pdu(ENQUIRE_LINK_RESP, seq)


def encode_unbind(seq: int) -> bytes:
    return encode_pdu(UNBIND, seq)


def encode_unbind_resp(seq: int) -> bytes:
    return encode_pdu(UNBIND_RESP, seq)


def encode_generic_nack(seq: int, status: int = ESME_RINVCMDID) -> bytes:
    return encode_pdu(GENERIC_NACK, seq, status=status)


def decode_empty(pdu: bytes, command_id: int) -> Header:
    """enquire_link(_resp), unbind(_resp), generic_nack: a header and no body."""
    head, body = split_pdu(pdu, command_id)
    if body:
        raise PduError(f"0x{command_id:08X} carries no body, got {len(body)} bytes")
    return head

"""``cmpp``: China Mobile's CMPP 2.0 / 3.0, straight to the operator's ISMG over a long TCP link.

The PDUs are ``cmpp_codec``; the link (login, window, heartbeat C/T/N, reconnects, graceful stop)
is ``session``; parts, throttling, receipts and replies are ``session_gateway``. This module says
what is CMPP's own (research notes: ../shared/research/channels-and-inbound.md §4,
gateway-protocols.md §5.2):

* login: CMPP_CONNECT with AuthenticatorSource = MD5(SP id + 9 zero bytes + secret + MMDDHHMMSS);
  the ISMG's CONNECT_RESP must carry Status 0 *and* AuthenticatorISMG = MD5(Status + our
  authenticator + secret) — a wrong status or authenticator is a refused login, which pauses the
  message with the status in words (``认证错 (authentication failed)``…);
* one SUBMIT per part, DestUsr_tl 1, Registered_Delivery 1 (status reports), Msg_src = SP id,
  Src_Id = the service number (+ extension), UCS-2 (Msg_Fmt 8) unless ``msg_fmt`` asks for GBK (15)
  or ASCII (0) and the text fits; a long text as parts with the UDH ``05 00 03 ref total n``
  (TP_udhi 1, Pk_total / Pk_number);
* heartbeats: CMPP_ACTIVE_TEST both ways; logout: CMPP_TERMINATE.

SUBMIT_RESP Result mapping (``classify``). CMPP 2.0 names Results 0-8 and calls every other value
"9~: 其他错误"; 3.0 names 9-13 as well, so the version decides what 9-13 mean:

=====================================  =====================================================
0                                      accepted; provider id = Msg_Id (uint64) in decimal
8 流量控制错 (too fast)                 throttled: the link slows down and the part goes again
3.0: 9 (this gateway does not serve    permanent, a recipient fault (never counts toward the
the charged number: with Fee_UserType  message's auto-pause)
0 the destination), 13 (bad
Dest_terminal_Id)
5, 7 (fee code, service id); 3.0 also  permanent, ``pause``: the account's configuration is
10, 11, 12 (Src_Id, Msg_src,           wrong, every message would fail the same way (we send
Fee_terminal_Id)                       the same Src_Id, Msg_src and Fee_terminal_Id in all)
1-4, 6; 2.0: 9 and above; 3.0: 14 and  permanent, counted (a protocol error, a text too long,
above (其他错误, a vendor's code)        or an error the version does not name)
a response that cannot be read         permanent, ``pause`` (a 2.0/3.0 version mismatch)
=====================================  =====================================================

A status report (DELIVER with Registered_Delivery 1) with Stat ``DELIVRD`` is delivered; any other
final Stat (UNDELIV, EXPIRED, REJECTD, an operator's ``MK:xxxx``…) is failed with that code;
``ACCEPTD`` is not final and is only answered. A mobile-originated DELIVER is kept as a reply; one
with a concatenation UDH (TP_udhi 1) is a part, answered at once and joined with its other parts
(``mo_join``, ``BROADCAST_CMPP_JOIN_TIMEOUT_S``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways import cmpp_codec as codec
from broadcast.gateways.base import Capabilities, Outcome, SendItem, SendResult, timeout_field
from broadcast.gateways.mo_join import MoPart, concatenation
from broadcast.gateways.reply_codes import digits_of
from broadcast.gateways.segments import Part
from broadcast.gateways.session import Dialect, Frame, SessionSettings
from broadcast.gateways.session_gateway import Inbound, PartAnswer, PartReport, SessionGateway, now_utc, part_accepted

__all__ = ["CmppDialect", "CmppGateway", "CmppSettings", "classify_result"]

CAPABILITIES = Capabilities(
    name="cmpp",
    max_batch=1,
    mixed_texts=True,
    pull_receipts=True,
    window=16,
    connections=1,
    description="China Mobile CMPP 2.0/3.0 to the operator's ISMG over TCP; status reports on the same link.",
)
VERSION_BYTE = {"2.0": 0x20, "3.0": 0x30}
#: Results that concern one recipient, and those that say the account is set up wrong, by version:
#: 2.0 names only 0-8 (9 and above are "other error": refused, counted, neither of these).
RECIPIENT_FAULTS = {0x20: frozenset(), 0x21: frozenset(), 0x30: frozenset({9, 13})}
ACCOUNT_FAULTS = {0x20: frozenset({5, 7}), 0x21: frozenset({5, 7}), 0x30: frozenset({5, 7, 10, 11, 12})}
CHINA = timezone(timedelta(hours=8))  # Submit_time / Done_time are Beijing time
HEADER = struct.Struct(">III")
SUBMIT_RESP = codec.SUBMIT | codec.RESP
TEMPLATES_MAX = 256  # SUBMITs kept packed but for the destination (per part and reply code)


class CmppSettings(BaseSettings):
    """``BROADCAST_CMPP_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_CMPP_", env_file=".env", extra="ignore")

    host: str = Field(description="The ISMG's address (given by the operator).")
    port: int = Field(default=7890, ge=1, le=65535, description="The ISMG's long-connection port (7890).")
    sp_id: str = Field(description="企业代码: the SP id (Source_Addr, 6 characters).")
    secret: SecretStr = Field(description="The shared secret of the SP account.")
    service_id: str = Field(default="", max_length=10, description="业务代码 (Service_Id), up to 10 characters.")
    src_id: str = Field(description="The SP's service number (接入号), with an optional extension (Src_Id, up to 21 digits).")
    version: Literal["2.0", "3.0"] = Field(default="2.0", description="CMPP version of the account: 2.0 or 3.0.")
    window: int = Field(default=16, ge=1, le=256, description="Unanswered SUBMITs per connection (the ISMG's window).")
    connections: int = Field(default=1, ge=1, le=16, description="Connections the account may hold at once.")
    timeout_s: float = timeout_field()  # the answer to one PDU (SUBMIT, CONNECT); also caps the connect
    idle_s: float = Field(default=60.0, gt=0, description="C: an ACTIVE_TEST after this long without traffic.")
    heartbeat_timeout_s: float = Field(default=60.0, gt=0, description="T: wait for an ACTIVE_TEST_RESP.")
    heartbeat_tries: int = Field(default=3, ge=1, description="N: unanswered ACTIVE_TESTs before the link is dead.")
    join_timeout_s: float = Field(default=10.0, gt=0, description="A reply in parts waits this long for the "
                                  "missing ones, then is kept as it is, marked incomplete.")
    msg_fmt: Literal[8, 15, 0] = Field(
        default=8, description="8 UCS-2 (always works); 15 GBK or 0 ASCII when the text fits, else UCS-2.")


def classify_result(result: int, msg_id: int, version: int) -> PartAnswer:
    """What a SUBMIT_RESP's Result says of one part under ``version`` (the module docstring's table)."""
    if result == 0:
        return PartAnswer(True, msg_id=codec.msg_id_str(msg_id))
    code, detail = f"cmpp_{result}", codec.result_name(result, version)
    if result == 8:
        return PartAnswer(False, code=code, detail=detail, throttled=True)
    return PartAnswer(False, code=code, detail=detail, recipient_fault=result in RECIPIENT_FAULTS[version],
                      pause=result in ACCOUNT_FAULTS[version])


class CmppDialect(Dialect):
    """CMPP for the session layer; one per connection (it keeps that login's authenticator)."""

    name = "cmpp"
    header_len = codec.HEADER_LEN

    def __init__(self, sp_id: str, secret: str, version: int, clock: Callable[[], datetime] | None = None) -> None:
        self.sp_id, self._secret, self.version = sp_id, secret, version
        self._clock = clock or (lambda: datetime.now(CHINA))
        self._auth = b""

    def __repr__(self) -> str:
        return f"CmppDialect(sp_id={self.sp_id!r}, version={self.version:#x})"

    def parse_header(self, head: bytes) -> tuple[int, int, int, int]:
        h = codec.decode_header(head)
        return h.total_length, h.command_id, h.seq, 0

    def unpack_header(self, data: bytes, pos: int) -> tuple[int, int, int, int]:
        total, command_id, seq = HEADER.unpack_from(data, pos)
        return total, command_id, seq, 0

    def is_response(self, command_id: int) -> bool:
        return bool(command_id & codec.RESP)

    def login(self, seq: int) -> bytes:
        stamp = codec.timestamp_of(self._clock())
        self._auth = codec.authenticator_source(self.sp_id, self._secret, stamp)
        return codec.encode_connect(seq, self.sp_id, self._secret, self.version, stamp)

    def login_refusal(self, resp: Frame) -> str | None:
        if resp.command_id != codec.CONNECT | codec.RESP:
            return f"the ISMG answered the login with command {resp.command_id:#x}, not CMPP_CONNECT_RESP"
        try:
            r = codec.decode_connect_resp(resp.body, self.version)
        except codec.CmppDecodeError as exc:
            return f"unreadable CMPP_CONNECT_RESP (is the version {self.version >> 4}.{self.version & 0xF} right?): {exc}"
        if r.status != 0:
            return f"CMPP_CONNECT status {r.status}: {codec.connect_status_name(r.status)}"
        if r.authenticator != codec.authenticator_ismg(0, self._auth, self._secret, self.version):
            return "the ISMG's AuthenticatorISMG does not match: not the gateway the secret belongs to"
        return None

    def keepalive(self, seq: int) -> bytes:
        return codec.encode_active_test(seq)

    def logout(self, seq: int) -> bytes:
        return codec.encode_terminate(seq)

    def is_keepalive(self, frame: Frame) -> bool:
        return frame.command_id == codec.ACTIVE_TEST

    def is_logout(self, frame: Frame) -> bool:
        return frame.command_id == codec.TERMINATE

    def answer(self, frame: Frame) -> bytes | None:
        if frame.command_id == codec.ACTIVE_TEST:
            return codec.encode_active_test_resp(frame.seq)
        if frame.command_id == codec.TERMINATE:
            return codec.encode_terminate_resp(frame.seq)
        if frame.command_id == codec.DELIVER:
            msg_id = int.from_bytes(frame.body[:8], "big") if len(frame.body) >= 8 else 0
            try:
                codec.decode_deliver(frame.body, self.version)
            except codec.CmppDecodeError:
                return codec.encode_deliver_resp(frame.seq, msg_id, 1, self.version)  # 1: bad message structure
            return codec.encode_deliver_resp(frame.seq, msg_id, 0, self.version)
        return None


@functools.lru_cache(maxsize=1024)  # asked twice per delivery: as it is checked, and as it is packed
def cmpp_number(phone: str) -> str | None:
    """A mainland number as CMPP carries it (``13800138000``: no ``+86``); None when it cannot be one."""
    digits = phone.strip().removeprefix("+")
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits if 3 <= len(digits) <= 20 and digits.isascii() and digits.isdigit() else None


@functools.lru_cache(maxsize=1024)
def _dest_field(phone: str, size: int) -> bytes:
    """Dest_terminal_Id as packed: the number, NUL-padded to the field's size (21 or 32 octets)."""
    return (cmpp_number(phone) or "").encode("ascii").ljust(size, b"\0")


def e164(number: str) -> str:
    """A handset as the rest of the code writes it: ``+86`` for an 11-digit mainland number."""
    if re.fullmatch(r"1\d{10}", number):
        return "+86" + number
    if re.fullmatch(r"861\d{10}", number):
        return "+" + number
    return number


def _report_time(done: str) -> datetime:
    try:
        return datetime.strptime(done, "%y%m%d%H%M").replace(tzinfo=CHINA).astimezone(UTC)
    except ValueError:
        return now_utc()


class CmppGateway(SessionGateway):
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    settings_class: ClassVar[type[BaseSettings]] = CmppSettings
    gsm7: ClassVar[bool] = False  # CMPP has no GSM-7: Msg_Fmt 8 (UCS-2), 15 or 0

    settings: CmppSettings

    def __init__(self, settings: BaseSettings, client: object | None = None) -> None:
        if not isinstance(settings, CmppSettings):
            raise TypeError(f"CmppGateway needs CmppSettings, not {type(settings).__name__}")
        self.version = VERSION_BYTE[settings.version]
        self._resp = struct.Struct(">QI" if settings.version == "3.0" else ">QB")  # SUBMIT_RESP Msg_Id, Result
        self._templates: dict[tuple[bytes, int, int, int, str], codec.SubmitTemplate] = {}
        super().__init__(settings, client)
        # Src_Id is 21 octets: the service number, then room for a message's reply code
        self.capabilities = dataclasses.replace(self.capabilities, reply_extension=max(0, 21 - len(settings.src_id)))  # type: ignore[misc]

    def __repr__(self) -> str:
        s = self.settings
        return f"CmppGateway({s.host}:{s.port}, sp_id={s.sp_id!r}, version={s.version})"

    def dialect(self) -> Dialect:
        return CmppDialect(self.settings.sp_id, self.settings.secret.get_secret_value(), self.version)

    def session_settings(self) -> SessionSettings:
        s = self.settings
        return SessionSettings(host=s.host, port=s.port, window=s.window, connections=s.connections,
                               response_timeout_s=s.timeout_s, idle_s=s.idle_s, heartbeat_timeout_s=s.heartbeat_timeout_s,
                               heartbeat_tries=s.heartbeat_tries, connect_timeout_s=min(s.timeout_s, 5.0))

    def check(self) -> list[str]:
        s, problems = self.settings, []
        if not s.host.strip():
            problems.append("BROADCAST_CMPP_HOST is empty")
        if len(s.sp_id) != 6 or not s.sp_id.isascii():
            problems.append("BROADCAST_CMPP_SP_ID must be the 6-character SP id (企业代码)")
        if not s.secret.get_secret_value():
            problems.append("BROADCAST_CMPP_SECRET is empty")
        if not re.fullmatch(r"\d{1,21}", s.src_id):
            problems.append("BROADCAST_CMPP_SRC_ID must be the service number (接入号) + extension, 1-21 digits")
        return problems

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        out = []
        for item in batch:
            if cmpp_number(item.phone) is None:
                out.append(SendResult(item.delivery_id, Outcome.PERMANENT, code="bad_number", recipient_fault=True,
                                      detail="not a number CMPP can carry (digits, at most 21)"))
            else:
                out.append(await self._deliver(item))
        return out

    def reply_address(self, extension: str) -> str:
        return digits_of(self.settings.src_id + extension)  # a reply's Dest_Id

    def submit_pdu(self, seq: int, item: SendItem, part: Part, coding: int) -> bytes:
        key = (part.payload, part.number, part.total, coding, item.extension)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= TEMPLATES_MAX:
                self._templates.clear()
            fmt, content = self._content(part, coding)
            s = self.settings
            submit = codec.Submit("", content, msg_fmt=fmt, udhi=part.udhi, pk_total=part.total,
                                  pk_number=part.number, service_id=s.service_id, msg_src=s.sp_id,
                                  src_id=s.src_id + item.extension, registered_delivery=1)
            template = self._templates[key] = codec.SubmitTemplate(submit, self.version)
        return template.packed(seq, _dest_field(item.phone, template.tid))

    def _content(self, part: Part, coding: int) -> tuple[int, bytes]:
        """Msg_Fmt and Msg_Content of a part: UCS-2 as split, or re-encoded as GBK / ASCII when it fits."""
        want = self.settings.msg_fmt
        if want == 8 or coding != 8:
            return coding, part.payload
        udh_len = part.payload[0] + 1 if part.udhi else 0
        text = part.payload[udh_len:].decode("utf-16-be", "surrogatepass")
        try:
            return want, part.payload[:udh_len] + text.encode("gbk" if want == 15 else "ascii")
        except UnicodeEncodeError:
            return 8, part.payload

    def classify(self, resp: Frame) -> PartAnswer:
        if resp.command_id == SUBMIT_RESP and len(resp.body) == self._resp.size:  # the common answer first
            msg_id, result = self._resp.unpack(resp.body)
            if result == 0:
                return part_accepted(str(msg_id))
        if resp.command_id != SUBMIT_RESP:
            return PartAnswer(False, code="bad_response", detail=f"command {resp.command_id:#x} answered a SUBMIT",
                              pause=True)
        try:
            r = codec.decode_submit_resp(resp.body, self.version)
        except codec.CmppDecodeError as exc:
            return PartAnswer(False, code="bad_response", detail=f"{exc} (is BROADCAST_CMPP_VERSION right?)", pause=True)
        return classify_result(r.result, r.msg_id, self.version)

    def parse_request(self, frame: Frame) -> PartReport | Inbound | MoPart | None:
        if frame.command_id != codec.DELIVER:
            return None
        try:
            d = codec.decode_deliver(frame.body, self.version)
            if d.registered_delivery == 1:
                report = codec.decode_status_report(d.content, self.version)
                if report.stat == "ACCEPTD":
                    return None
                status: Literal["delivered", "failed"] = "delivered" if report.stat == "DELIVRD" else "failed"
                return PartReport(codec.msg_id_str(report.msg_id), status, report.stat, _report_time(report.done_time))
            udh, text = codec.decode_text(d.content, d.msg_fmt, d.udhi)
        except codec.CmppDecodeError:
            return None  # answered with Result 1 by the dialect
        inbound = Inbound("cmpp", codec.msg_id_str(d.msg_id), e164(d.src_terminal), d.dest_id, text, now_utc(),
                          frame.raw)
        part = concatenation(udh)
        return MoPart(inbound, *part) if part and part[1] > 1 else inbound  # a part: joined (``mo_join``)

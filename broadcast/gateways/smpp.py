"""``smpp``: SMPP 3.4 to an SMSC or aggregator, on the shared session layer (``session_gateway``).

One long-lived TCP link per connection (``BROADCAST_SMPP_CONNECTIONS``), bound as a transceiver, or
as a transmitter for submits plus a receiver for the receipts (``BROADCAST_SMPP_BIND=
transmitter+receiver``). Each delivery's text is split into parts (``segments.split``: GSM-7
unpacked as ``data_coding`` 0, else UCS-2 as 8; a long text as parts with the 6-octet UDH and
``esm_class`` 0x40), each part one ``submit_sm`` with ``registered_delivery`` 1, pipelined through a
window of ``BROADCAST_SMPP_WINDOW`` unanswered requests. PDUs: ``smpp_codec``.

Answer mapping (``submit_sm_resp`` command_status, SMPP 3.4 §5.1.3):

=====================================  ==========================================================
ESME_ROK                               accepted; the provider id is the part's message_id
ESME_RTHROTTLED, ESME_RMSGQFUL,        throttled: the part is submitted again after a backoff the
ESME_RSYSERR, ESME_RX_T_APPN,          whole link waits out, a few times, then retryable — never a
ESME_RINVBNDSTS                        failure (``session_gateway``)
ESME_RINVDSTADR, _RINVDSTTON,          permanent, a recipient fault (this number only: never
_RINVDSTNPI                            counted toward the message's auto-pause)
ESME_RINVSRCADR, _RINVSRCTON,          permanent, ``pause``: our own sender or service type is
_RINVSRCNPI, _RINVSERTYP, _RINVSYSTYP  refused, every message would be (fix the settings)
any other status (RSUBMITFAIL, a       permanent, counted (code = the status name, ``vendor
vendor-specific 0x400-0x4FF, …)        0x00000401`` for one 3.4 does not name)
bind refused (RBINDFAIL, RINVPASWD,    permanent, ``pause``; the reason names the status
RINVSYSID, …)
no answer within response_timeout_s,  retryable, ``maybe_sent`` (in doubt); a part never written:
link lost after the write              retryable
=====================================  ==========================================================

Receipts: a ``deliver_sm`` with the receipt message type (``esm_class`` 0x04) is read from its
TLVs (``receipted_message_id``, ``message_state``) or, failing them, the conventional text
``id:… stat:… err:…``. Final states: DELIVRD → delivered; UNDELIV, EXPIRED, REJECTD, DELETED,
UNKNOWN → failed; ENROUTE/ACCEPTD are not final and are acknowledged only. A receipt id given in
decimal for a hex message_id (or the reverse, as some SMSCs do) is matched too. Any other
``deliver_sm`` is a mobile-originated message, kept with its raw PDU (``held_inbound``); one part
of a longer reply (a concatenation UDH, or the sar_* TLVs) is answered at once and joined with its
other parts (``mo_join``, ``BROADCAST_SMPP_JOIN_TIMEOUT_S``).
A ``data_sm`` from the SMSC (§4.7: its text in the ``message_payload`` TLV, a receipt's id and
state in the same TLVs) is taken exactly like a deliver_sm — a receipt or a reply — and answered
``data_sm_resp``; any other request (outbind…) is answered ``generic_nack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import struct
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways import smpp_codec as pdu
from broadcast.gateways import smpp_receipts as rc
from broadcast.gateways.base import Capabilities, SendItem, SendResult, is_local_host, timeout_field
from broadcast.gateways.mo_join import MoPart, concatenation
from broadcast.gateways.reply_codes import digits_of
from broadcast.gateways.segments import Part, decode_gsm7
from broadcast.gateways.session import Dialect, Frame, LinkDown, LoginRefused, SessionPool, SessionSettings
from broadcast.gateways.session_gateway import Inbound, PartAnswer, PartReport, SessionGateway, now_utc, part_accepted

CAPABILITIES = Capabilities(
    name="smpp",
    max_batch=1,
    mixed_texts=True,
    pull_receipts=True,
    window=16,
    connections=1,
    description="SMPP 3.4 to an SMSC or aggregator (bind transceiver or transmitter+receiver); receipts by deliver_sm.",
)

THROTTLED = {pdu.STATUS[n] for n in ("ESME_RTHROTTLED", "ESME_RMSGQFUL", "ESME_RSYSERR", "ESME_RX_T_APPN",
                                     "ESME_RINVBNDSTS")}
RECIPIENT = {pdu.STATUS[n] for n in ("ESME_RINVDSTADR", "ESME_RINVDSTTON", "ESME_RINVDSTNPI")}
ACCOUNT = {pdu.STATUS[n] for n in ("ESME_RINVSRCADR", "ESME_RINVSRCTON", "ESME_RINVSRCNPI", "ESME_RINVSERTYP",
                                   "ESME_RINVSYSTYP")}
HEADER = struct.Struct(">IIII")
DELIVERED = {"DELIVRD", "DELIVERED"}
FAILED = {"UNDELIV", "UNDELIVERABLE", "EXPIRED", "REJECTD", "REJECTED", "DELETED", "UNKNOWN"}


class SmppSettings(BaseSettings):
    """``BROADCAST_SMPP_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_SMPP_", env_file=".env", extra="ignore")

    host: str = Field(description="The SMSC's host name or address.")
    port: int = Field(default=2775, ge=1, le=65535, description="The SMSC's SMPP port.")
    system_id: str = Field(max_length=15, description="The account (bind system_id).")
    password: SecretStr = Field(description="The account's password (at most 8 characters in SMPP 3.4).")
    system_type: str = Field(default="", max_length=12, description="bind system_type, if the SMSC wants one.")
    service_type: str = Field(default="", max_length=5, description="submit_sm service_type (usually empty).")
    source_addr: str = Field(default="", max_length=20, description="Sender: a number, a short code or an alphanumeric name.")
    source_addr_ton: int | None = Field(default=None, ge=0, le=255,
                                        description="Sender TON; empty: 5 for a name, 1 for +number, else 0.")
    source_addr_npi: int | None = Field(default=None, ge=0, le=255,
                                        description="Sender NPI; empty: 0 for a name, else 1 (ISDN).")
    bind: Literal["transceiver", "transmitter+receiver"] = Field(
        default="transceiver", description="One transceiver link, or a transmitter and a receiver.")
    window: int = Field(default=16, ge=1, le=1000, description="Unanswered submits per connection.")
    connections: int = Field(default=1, ge=1, le=64, description="Connections (binds) of the account.")
    response_timeout_s: float = timeout_field()
    idle_s: float = Field(default=30.0, gt=0, description="enquire_link after this long without traffic.")
    heartbeat_timeout_s: float = Field(default=10.0, gt=0, description="Wait for an enquire_link_resp.")
    heartbeat_tries: int = Field(default=3, ge=1, description="Unanswered enquire_links before the link is dropped.")
    join_timeout_s: float = Field(default=10.0, gt=0, description="A reply in parts waits this long for the "
                                  "missing ones, then is kept as it is, marked incomplete.")

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) > 8:
            raise ValueError("SMPP 3.4 passwords are at most 8 characters")
        return value

    @property
    def timeout_s(self) -> float:
        """The per-response timeout under the name every gateway's settings use (``base.settings_timeout``)."""
        return self.response_timeout_s


class SmppDialect(Dialect):
    """SMPP 3.4 for ``session.Session``: a bind, enquire_link, unbind, and our answers to the SMSC."""

    name = "smpp"
    header_len = pdu.HEADER_LEN

    def __init__(self, bind_command: int, bind: pdu.Bind) -> None:
        self.bind_command, self.bind = bind_command, bind

    def parse_header(self, head: bytes) -> tuple[int, int, int, int]:
        h = pdu.decode_header(head)
        return h.length, h.command_id, h.seq, h.status

    def unpack_header(self, data: bytes, pos: int) -> tuple[int, int, int, int]:
        length, command_id, status, seq = HEADER.unpack_from(data, pos)
        return length, command_id, seq, status

    def is_response(self, command_id: int) -> bool:
        return bool(command_id & pdu.RESPONSE_BIT)

    def login(self, seq: int) -> bytes:
        return pdu.encode_bind(self.bind_command, seq, self.bind)

    def login_refusal(self, resp: Frame) -> str | None:
        what = {v: k for k, v in pdu.BINDS.items()}[self.bind_command]
        if resp.command_id != self.bind_command | pdu.RESPONSE_BIT:
            return f"bind_{what} answered with command 0x{resp.command_id:08X} ({pdu.status_name(resp.status)})"
        if resp.status != pdu.ESME_ROK:
            return f"bind_{what} refused: {pdu.status_name(resp.status)} (0x{resp.status:08X})"
        return None

    def keepalive(self, seq: int) -> bytes:
        return pdu.encode_enquire_link(seq)

    def logout(self, seq: int) -> bytes:
        return pdu.encode_unbind(seq)

    def is_keepalive(self, frame: Frame) -> bool:
        return frame.command_id == pdu.ENQUIRE_LINK

    def is_logout(self, frame: Frame) -> bool:
        return frame.command_id == pdu.UNBIND

    def answer(self, frame: Frame) -> bytes | None:
        if frame.command_id == pdu.ENQUIRE_LINK:
            return pdu.encode_enquire_link_resp(frame.seq)
        if frame.command_id == pdu.UNBIND:
            return pdu.encode_unbind_resp(frame.seq)
        if frame.command_id == pdu.DELIVER_SM:
            return pdu.encode_deliver_sm_resp(frame.seq)
        if frame.command_id == pdu.DATA_SM:
            return pdu.encode_data_sm_resp(frame.seq)
        if frame.command_id & pdu.RESPONSE_BIT:
            return None
        return pdu.encode_generic_nack(frame.seq)  # outbind, anything else: not taken


def classify(resp: Frame) -> PartAnswer:
    """What a submit_sm_resp (or a generic_nack) says of one part (the table in the module docstring)."""
    if resp.command_id == pdu.SUBMIT_SM_RESP and resp.status == pdu.ESME_ROK:  # the common answer first
        body = resp.body
        end = body.find(b"\0")
        if end > 0:
            return part_accepted(body[:end].decode("latin-1"), "ESME_ROK")
    name = pdu.status_name(resp.status)
    if resp.command_id == pdu.SUBMIT_SM_RESP and resp.status == pdu.ESME_ROK:
        try:
            _, message_id = pdu.decode_submit_sm_resp(resp.raw)
        except pdu.PduError as exc:
            return PartAnswer(False, code="bad_response", detail=f"submit_sm_resp: {exc}")
        if not message_id:
            return PartAnswer(False, code="no_message_id", detail="ESME_ROK without a message_id")
        return PartAnswer(True, msg_id=message_id, code=name)
    if resp.command_id not in (pdu.SUBMIT_SM_RESP, pdu.GENERIC_NACK):
        return PartAnswer(False, code="bad_response", detail=f"command 0x{resp.command_id:08X} answered a submit_sm")
    detail = f"{'generic_nack' if resp.command_id == pdu.GENERIC_NACK else 'submit_sm_resp'}: {name}"
    return PartAnswer(False, code=name, detail=detail, throttled=resp.status in THROTTLED,
                      recipient_fault=resp.status in RECIPIENT, pause=resp.status in ACCOUNT)


def source_ton_npi(addr: str, ton: int | None, npi: int | None) -> tuple[int, int]:
    """The sender's TON/NPI: as configured, else 5/0 for an alphanumeric name, 1/1 for +number, 0/1."""
    if addr and not addr.lstrip("+").isdigit():
        auto = (5, 0)
    elif addr.startswith("+"):
        auto = (1, 1)
    else:
        auto = (0, 1)
    return (auto[0] if ton is None else ton), (auto[1] if npi is None else npi)


@functools.lru_cache(maxsize=1024)  # asked once a part: a long text's parts ask again
def destination(phone: str) -> tuple[int, int, str]:
    """(TON, NPI, digits): an E.164 ``+86…`` goes as international (1/1) without its ``+``."""
    if phone.startswith("+"):
        return 1, 1, phone[1:]
    return 0, 1, phone


def decode_text(sm: pdu.ShortMessage) -> str:
    """The text of a mobile-originated message (its UDH, if any, left out)."""
    payload = sm.short_message or (sm.tlv(pdu.TLV_MESSAGE_PAYLOAD) or b"")
    if sm.esm_class & pdu.ESM_UDHI and payload:
        payload = payload[1 + payload[0]:]
    coding = sm.data_coding
    if coding == 8:
        return payload.decode("utf-16-be", "replace")
    if coding == 0:
        return decode_gsm7(bytes(b & 0x7F for b in payload))
    return payload.decode("latin-1" if coding == 3 else "ascii", "replace")


def mo_part(sm: pdu.ShortMessage) -> tuple[int, int, int] | None:
    """``(ref, total, number)`` of a reply that is one part of several: from its UDH (esm_class UDHI),
    else from the sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs (§5.3.2.22-24)."""
    payload = sm.short_message or (sm.tlv(pdu.TLV_MESSAGE_PAYLOAD) or b"")
    if sm.esm_class & pdu.ESM_UDHI and payload and (found := concatenation(payload[:1 + payload[0]])):
        return found
    ref, total, number = (sm.tlv(t) for t in (pdu.TLV_SAR_MSG_REF_NUM, pdu.TLV_SAR_TOTAL_SEGMENTS,
                                              pdu.TLV_SAR_SEGMENT_SEQNUM))
    if ref is None or total is None or number is None or (len(ref), len(total), len(number)) != (2, 1, 1):
        return None
    return (int.from_bytes(ref, "big") | 0x20000, total[0], number[0]) if 1 <= number[0] <= total[0] else None


class SmppGateway(SessionGateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = SmppSettings

    def __init__(self, settings: SmppSettings, client: object | None = None) -> None:
        self.settings: SmppSettings = settings
        super().__init__(settings, client)
        # source_addr is 20 characters at most: a numeric sender has room for a message's reply code
        number = settings.source_addr.lstrip("+")
        room = max(0, 20 - len(settings.source_addr)) if number.isdigit() else 0
        self.capabilities = dataclasses.replace(self.capabilities, reply_extension=room)  # type: ignore[misc]
        self._templates: dict[tuple[bytes, int, str], pdu.SmTemplate] = {}  # per part and reply code
        self._rx: SessionPool | None = None
        self._rx_task: asyncio.Task[None] | None = None
        if settings.bind == "transmitter+receiver":
            self._rx = SessionPool(lambda: self._dialect(pdu.BIND_RECEIVER), self.session_settings(), self._on_request)

    # -- what the session layer asks ------------------------------------------------------------

    def _dialect(self, command: int) -> SmppDialect:
        s = self.settings
        bind = pdu.Bind(s.system_id, s.password.get_secret_value(), s.system_type)
        return SmppDialect(command, bind)

    def dialect(self) -> Dialect:
        split = self.settings.bind == "transmitter+receiver"
        return self._dialect(pdu.BIND_TRANSMITTER if split else pdu.BIND_TRANSCEIVER)

    def session_settings(self) -> SessionSettings:
        s = self.settings
        return SessionSettings(host=s.host, port=s.port, window=s.window, connections=s.connections,
                               response_timeout_s=s.response_timeout_s, idle_s=s.idle_s,
                               heartbeat_timeout_s=s.heartbeat_timeout_s, heartbeat_tries=s.heartbeat_tries,
                               connect_timeout_s=min(5.0, s.response_timeout_s))

    def reply_address(self, extension: str) -> str:
        # a reply's destination_addr (numeric senders only: capabilities.reply_extension)
        return digits_of(self.settings.source_addr + extension) if self.capabilities.reply_extension else ""

    def submit_pdu(self, seq: int, item: SendItem, part: Part, coding: int) -> bytes:
        key = (part.payload, coding, item.extension)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= 256:
                self._templates.clear()
            s = self.settings
            ton, npi = source_ton_npi(s.source_addr, s.source_addr_ton, s.source_addr_npi)
            source = (s.source_addr.lstrip("+") if ton == 1 else s.source_addr) + item.extension  # + reply code
            sm = pdu.ShortMessage(
                destination_addr="", short_message=part.payload, source_addr=source, source_addr_ton=ton,
                source_addr_npi=npi, service_type=s.service_type, esm_class=pdu.ESM_UDHI if part.udhi else 0,
                registered_delivery=1, data_coding=coding,
            )
            template = self._templates[key] = pdu.SmTemplate(pdu.SUBMIT_SM, sm)
        return template.pdu(seq, *destination(item.phone))

    def classify(self, resp: Frame) -> PartAnswer:
        return classify(resp)

    def parse_request(self, frame: Frame) -> PartReport | Inbound | MoPart | None:
        if frame.command_id == pdu.DELIVER_SM:
            _, sm = pdu.decode_deliver_sm(frame.raw)  # a PduError: unanswered, the SMSC sends it again
        elif frame.command_id == pdu.DATA_SM:  # §4.7: the same, with the text in message_payload
            _, sm = pdu.decode_data_sm(frame.raw)
        else:
            return None
        if rc.is_receipt(sm):
            report = rc.delivery_report(sm)
            if report is None or report.stat not in DELIVERED | FAILED:
                return None  # no id, or not final (ENROUTE, ACCEPTD): acknowledged, nothing to record
            status: Literal["delivered", "failed"] = "delivered" if report.stat in DELIVERED else "failed"
            code = report.stat if status == "delivered" or not report.err else f"{report.stat}:{report.err}"
            return PartReport(self._known_id(report.message_id), status, code, now_utc())
        phone = f"+{sm.source_addr}" if sm.source_addr_ton == 1 else sm.source_addr
        inbound = Inbound("smpp", None, phone, sm.destination_addr, decode_text(sm), now_utc(), frame.raw)
        part = mo_part(sm)
        return MoPart(inbound, *part) if part and part[1] > 1 else inbound  # a part: joined (``mo_join``)

    def _known_id(self, message_id: str) -> str:
        """The message_id we were given for the part a receipt names: as is, or its hex/decimal twin."""
        if message_id in self._parts:
            return message_id
        twins: list[str] = []
        with contextlib.suppress(ValueError):
            twins.append(format(int(message_id, 16), "d"))
        if message_id.isdigit():
            n = int(message_id)
            twins += [format(n, "x"), format(n, "X"), format(n, "08x"), format(n, "08X")]
        return next((t for t in twins if t in self._parts), message_id)

    # -- the receiver link (bind transmitter+receiver) -------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        if self._rx is not None and self._rx_task is None:
            self._rx_task = asyncio.create_task(self._keep_receiver())
        out = []
        for item in batch:
            out.append(await self._deliver(item))
        return out

    async def _keep_receiver(self) -> None:
        """Keep the receiver bound while the gateway lives (the pool reconnects it, with backoff)."""
        assert self._rx is not None
        while not self._rx.closing:
            with contextlib.suppress(LinkDown, LoginRefused):
                await self._rx.ping()
            await asyncio.sleep(1.0)

    async def ping(self) -> str | None:
        problem = await super().ping()
        if problem is None and self._rx is not None:
            try:
                await self._rx.ping()
            except LoginRefused as exc:
                problem = f"receiver login refused: {exc.reason}"
            except LinkDown as exc:
                problem = f"receiver: {exc.reason}"
            finally:
                await self._rx.aclose()
                self._rx = SessionPool(lambda: self._dialect(pdu.BIND_RECEIVER), self.session_settings(),
                                       self._on_request)
        return problem

    async def aclose(self) -> None:
        if self._rx_task is not None:
            self._rx_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rx_task
            self._rx_task = None
        if self._rx is not None:
            await self._rx.aclose()
        await super().aclose()

    # -- checks -------------------------------------------------------------------------------

    def check(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        if not s.password.get_secret_value():
            problems.append("BROADCAST_SMPP_PASSWORD is empty")
        if not s.source_addr:
            problems.append("BROADCAST_SMPP_SOURCE_ADDR is empty: the SMSC picks the sender (many refuse with ESME_RINVSRCADR)")
        if not is_local_host(s.host):
            problems.append(f"SMPP to {s.host} is unencrypted: the password and every text cross the network in clear "
                            "(use a VPN or a TLS tunnel such as stunnel to the SMSC)")
        return problems

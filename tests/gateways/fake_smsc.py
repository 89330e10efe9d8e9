"""A small SMPP 3.4 SMSC in a thread of its own (built on ``smpp_codec``), for the fast tests and the
contract kit: the gateway under test runs in any event loop and reaches it over 127.0.0.1.

It binds the accounts it knows (RBINDFAIL for an unknown system_id, RINVPASWD for a wrong password),
answers enquire_link and unbind, answers each submit_sm by ``verdict`` (ESME_ROK with a fresh
message_id, a refused destination, throttling, or no answer at all: ``silent``) and sends a receipt
deliver_sm for each accepted one (``receipts``; as a data_sm with ``data_sm``). Everything it got is
kept in ``submits``, and our answers to its requests in ``answers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from broadcast.gateways import smpp_codec as c
from broadcast.gateways import smpp_receipts as rc

RINVDSTADR, RTHROTTLED = c.STATUS["ESME_RINVDSTADR"], c.STATUS["ESME_RTHROTTLED"]


@dataclass
class FakeSmsc:
    accounts: dict[str, str] = field(default_factory=lambda: {"kit": "kitpass1"})
    refuse: set[str] = field(default_factory=set)  # destination digits answered ESME_RINVDSTADR
    undeliverable: set[str] = field(default_factory=set)  # accepted, then an UNDELIV receipt
    throttle_first: int = 0  # the first N submits are answered ESME_RTHROTTLED
    throttle_all: bool = False
    silent: bool = False  # bind, then never answer a submit
    receipts: bool = True
    receipt_as_decimal: bool = False  # the receipt names the id in decimal (message_id is hex)
    mo: list[tuple[str, str]] = field(default_factory=list)  # (from, text) sent after each bind
    mo_pdus: list[c.ShortMessage] = field(default_factory=list)  # replies sent as they are after each bind
    data_sm: bool = False  # receipts and replies as data_sm (text in message_payload), not deliver_sm
    answers: list[tuple[int, int]] = field(default_factory=list)  # (command_id, seq) of our requests' answers
    submits: list[c.ShortMessage] = field(default_factory=list)
    binds: list[tuple[int, str]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._n = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeSmsc]:
        ready = threading.Event()
        stop: list[asyncio.Event] = []

        async def main() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            stop.append(asyncio.Event())
            ready.set()
            async with server:
                await stop[0].wait()

        def thread() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.close()

        t = threading.Thread(target=thread, daemon=True)
        t.start()
        assert ready.wait(10), "the fake SMSC did not start"
        try:
            yield self
        finally:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(stop[0].set)
            t.join(10)

    # -- one connection --------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bound = False
        try:
            while True:
                head = await reader.readexactly(16)
                h = c.decode_header(head)
                raw = head + await reader.readexactly(h.length - 16)
                if h.command_id in c.BINDS.values():
                    _, bind = c.decode_bind(raw)
                    status = c.ESME_ROK
                    if bind.system_id not in self.accounts:
                        status = c.STATUS["ESME_RBINDFAIL"]
                    elif self.accounts[bind.system_id] != bind.password:
                        status = c.STATUS["ESME_RINVPASWD"]
                    self.binds.append((h.command_id, bind.system_id))
                    writer.write(c.encode_bind_resp(h.command_id, h.seq, "FAKE", status))
                    if status != c.ESME_ROK:
                        break
                    bound = True
                    for i, sm in enumerate(self.mo_pdus):
                        writer.write(self._request(8000 + i, sm))
                    for i, (who, text) in enumerate(self.mo):
                        writer.write(self._request(9000 + i, c.ShortMessage(
                            "10690", source_addr=who.lstrip("+"), source_addr_ton=1, data_coding=8,
                            short_message=text.encode("utf-16-be"))))
                elif h.command_id == c.SUBMIT_SM and bound:
                    self._submit(writer, raw, h)
                elif h.command_id == c.ENQUIRE_LINK:
                    writer.write(c.encode_enquire_link_resp(h.seq))
                elif h.command_id == c.UNBIND:
                    writer.write(c.encode_unbind_resp(h.seq))
                    break
                elif h.command_id & c.RESPONSE_BIT:
                    self.answers.append((h.command_id, h.seq))  # deliver_sm_resp, data_sm_resp
                else:
                    writer.write(c.encode_generic_nack(h.seq))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _submit(self, writer: asyncio.StreamWriter, raw: bytes, h: c.Header) -> None:
        _, sm = c.decode_submit_sm(raw)
        self.submits.append(sm)
        if self.silent:
            return
        if self.throttle_all or len(self.submits) <= self.throttle_first:
            writer.write(c.encode_pdu(c.SUBMIT_SM_RESP, h.seq, status=RTHROTTLED))
            return
        if sm.destination_addr in self.refuse:
            writer.write(c.encode_pdu(c.SUBMIT_SM_RESP, h.seq, status=RINVDSTADR))
            return
        self._n += 1
        message_id = f"{self._n + 0xA000:x}"
        writer.write(c.encode_submit_sm_resp(h.seq, message_id))
        if self.receipts:
            failed = sm.destination_addr in self.undeliverable
            rid = str(int(message_id, 16)) if self.receipt_as_decimal else message_id
            text = rc.receipt_text(rid, "UNDELIV" if failed else "DELIVRD", "001" if failed else "000")
            tlvs = () if self.receipt_as_decimal else ((c.TLV_RECEIPTED_MESSAGE_ID, rid.encode() + b"\0"),
                                                       (c.TLV_MESSAGE_STATE, bytes([5 if failed else 2])))
            writer.write(self._request(h.seq + 100000, c.ShortMessage(
                sm.source_addr, source_addr=sm.destination_addr, esm_class=c.ESM_RECEIPT, registered_delivery=0,
                short_message=text.encode(), tlvs=tlvs)))

    def _request(self, seq: int, sm: c.ShortMessage) -> bytes:
        """A deliver_sm, or with ``data_sm`` a data_sm: the text moved to the message_payload TLV."""
        if not self.data_sm:
            return c.encode_deliver_sm(seq, sm)
        moved = dataclasses.replace(sm, short_message=b"", tlvs=(*sm.tlvs, (c.TLV_MESSAGE_PAYLOAD, sm.short_message)))
        return c.encode_data_sm(seq, moved)


_SHARED: dict[str, tuple[FakeSmsc, contextlib.ExitStack]] = {}


def shared(name: str, **options: object) -> FakeSmsc:
    """One fake SMSC per ``name``, started on first use and left running for the test process
    (the contract kit builds gateways from plain factories, with no fixture to hold a server)."""
    if name not in _SHARED:
        smsc = FakeSmsc(**options)  # type: ignore[arg-type]
        stack = contextlib.ExitStack()
        stack.enter_context(smsc.running())
        _SHARED[name] = (smsc, stack)
    return _SHARED[name][0]

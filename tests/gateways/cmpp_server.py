"""A CMPP ISMG (operator gateway) for tests, written from the spec and independent of the client code:
its own ``struct`` layouts, no import of ``broadcast.gateways.cmpp_codec``.

Speaks CMPP 2.0 or 3.0, whichever version byte the client's CONNECT carries (up to ``max_version``),
on 127.0.0.1 and a random port. It checks the login authenticator against ``accounts`` and answers
with a correct AuthenticatorISMG; answers every SUBMIT after ``latency_s`` with a Msg_Id and a Result
(``results`` per destination, flow control for the first ``throttle_first`` submits or above
``max_rate`` per second); then sends a status report DELIVER (``stats`` per destination, DELIVRD by
default) and counts the DELIVER_RESPs. It measures the unanswered submits per connection (the
client's window in use) and flags an overflow of ``window``; it can go ``silent`` (answer nothing
after the login), cut the link after ``cut_after`` submits (``hold_after``: submits past that count
are left unanswered until then; the next link is served normally; ``cut_repeat``: every submit from
the ``cut_after``-th on cuts the link), send its own ACTIVE_TEST every ``heartbeat_s`` and mobile-originated
DELIVERs (``send_mo``). Every submit is recorded (``submits``); ``texts()`` joins the parts.

In-process: ``async with CmppServer(accounts={"901234": "secret"}) as srv: ... srv.port``.
As a process: ``python -m tests.gateways.cmpp_server --account 901234:secret [--port N] [--report F]``
prints ``PORT <n>`` when it listens and writes a JSON report to ``--report`` on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import signal
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

RESP = 0x80000000
CONNECT, TERMINATE, SUBMIT, DELIVER, ACTIVE_TEST = 1, 2, 4, 5, 8
MSG_ID_BASE = 0xA000_0000_0000_0000  # above 2**63: the client must treat Msg_Id as unsigned


@dataclass
class Submitted:
    """One SUBMIT as the server read it."""

    conn: int
    seq: int
    dest: str
    pk_total: int
    pk_number: int
    udh: str  # hex
    text: str
    msg_fmt: int
    src_id: str
    service_id: str
    msg_src: str
    registered_delivery: int
    result: int = -1  # -1: not answered
    msg_id: int = 0
    at: float = 0.0


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii")


def _pad(s: str, n: int) -> bytes:
    return s.encode("ascii").ljust(n, b"\0")[:n]


def _pdu(command_id: int, seq: int, body: bytes = b"") -> bytes:
    return struct.pack(">III", 12 + len(body), command_id, seq) + body


def parse_submit(body: bytes, v3: bool) -> dict[str, Any]:
    """The fields of a SUBMIT body at the spec's offsets (one destination)."""
    tid = 32 if v3 else 21
    o = 23 + tid + (1 if v3 else 0)  # Msg_Id 8, Pk_total, Pk_number, Registered_Delivery, Msg_level, Service_Id 10, Fee_UserType
    f: dict[str, Any] = {
        "pk_total": body[8], "pk_number": body[9], "registered_delivery": body[10], "service_id": _cstr(body[12:22]),
        "udhi": body[o + 1], "msg_fmt": body[o + 2], "msg_src": _cstr(body[o + 3:o + 9]),
    }
    o += 3 + 6 + 2 + 6 + 17 + 17  # TP_pId TP_udhi Msg_Fmt, Msg_src, FeeType, FeeCode, ValId_Time, At_Time
    f["src_id"] = _cstr(body[o:o + 21])
    n = body[o + 21]
    if n != 1:
        raise ValueError(f"DestUsr_tl {n}")
    o += 22
    f["dest"] = _cstr(body[o:o + tid])
    o += tid + (1 if v3 else 0)
    length = body[o]
    f["content"] = body[o + 1:o + 1 + length]
    if len(body) != o + 1 + length + (20 if v3 else 8):
        raise ValueError(f"SUBMIT body is {len(body)} bytes, its fields say {o + 1 + length + (20 if v3 else 8)}")
    return f


def content_text(content: bytes, udhi: int, msg_fmt: int) -> tuple[bytes, str]:
    udh = content[:content[0] + 1] if udhi else b""
    payload = content[len(udh):]
    return udh, payload.decode({8: "utf-16-be", 15: "gbk"}.get(msg_fmt, "latin-1"))


class _Conn:
    def __init__(self, srv: CmppServer, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.srv, self.n, self.reader, self.writer = srv, n, reader, writer
        self.v3 = False
        self.src_id = ""
        self.unanswered: set[int] = set()
        self.held: list[tuple[int, Submitted]] = []
        self.seq = 0x7000_0000  # the server's own sequence numbers
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending_tests: dict[int, float] = {}
        self.logged_in = asyncio.Event()  # an ISMG sends nothing of its own before the login is answered

    def send(self, pdu: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(pdu)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()

    def status_bytes(self, value: int) -> bytes:
        return value.to_bytes(4 if self.v3 else 1, "big")


class CmppServer:
    def __init__(self, accounts: dict[str, str] | None = None, *, max_version: int = 0x30, latency_s: float = 0.0,
                 results: dict[str, int] | None = None, throttle_first: int = 0, max_rate: float | None = None,
                 stats: dict[str, str] | None = None, receipts: bool = True, window: int | None = None,
                 refuse_overflow: bool = False, heartbeat_s: float | None = None, silent: bool = False,
                 cut_after: int | None = None, cut_repeat: bool = False, hold_after: int | None = None, port: int = 0) -> None:
        self.accounts = dict(accounts or {"901234": "kit-cmpp-secret-1"})
        self.max_version, self.latency_s = max_version, latency_s
        self.results, self.stats = dict(results or {}), dict(stats or {})
        self.throttle_first, self.max_rate, self.receipts = throttle_first, max_rate, receipts
        self.window, self.refuse_overflow, self.heartbeat_s = window, refuse_overflow, heartbeat_s
        self.silent, self.cut_after, self.cut_repeat, self.hold_after = silent, cut_after, cut_repeat, hold_after
        self.port = port
        # what happened
        self.logins: list[tuple[str, int, int]] = []  # (source_addr, version, status)
        self.submits: list[Submitted] = []
        self.max_unanswered = 0
        self.overflows = 0
        self.deliver_resps: list[tuple[int, int]] = []  # (Msg_Id, Result)
        self.client_active_tests: list[float] = []  # monotonic times of the client's heartbeats
        self.active_test_answers = 0  # our ACTIVE_TESTs the client answered
        self.terminates = 0
        self.connections = 0
        self.closed_by_client = 0
        self.cuts = 0
        self._conns: dict[int, _Conn] = {}
        self._server: asyncio.base_events.Server | None = None
        self._msg_ids = 0
        self._accept_times: list[float] = []

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> CmppServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for conn in list(self._conns.values()):
            conn.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def live(self) -> int:
        """Connections open now."""
        return len(self._conns)

    # -- what tests ask --------------------------------------------------------------------------
    def accepted(self) -> list[Submitted]:
        return [s for s in self.submits if s.result == 0]

    def texts(self) -> list[tuple[str, str]]:
        """(destination, whole text) of every accepted message, parts joined by their UDH reference,
        in the order the last part arrived; a message with a part missing is left out."""
        singles: list[tuple[str, str]] = []
        groups: dict[tuple[str, str, int], dict[int, str]] = {}
        for s in self.accepted():
            if s.pk_total <= 1:
                singles.append((s.dest, s.text))
                continue
            ref = s.udh[6:-4] if s.udh else ""
            parts = groups.setdefault((s.dest, ref, s.pk_total), {})
            parts[s.pk_number] = s.text
            if len(parts) == s.pk_total:
                singles.append((s.dest, "".join(parts[i] for i in range(1, s.pk_total + 1))))
        return singles

    def per_number(self) -> Counter[str]:
        """How many whole messages each number was sent."""
        return Counter(dest for dest, _ in self.texts())

    async def send_mo(self, phone: str, text: str, dest_id: str | None = None, *, conn: int | None = None,
                      udh: bytes = b"") -> None:
        """A mobile-originated DELIVER (UCS-2) from ``phone`` on one live connection; with ``udh``, one
        part of a longer reply (TP_udhi 1, the header before the text)."""
        c = self._conns[conn] if conn is not None else next(iter(self._conns.values()))
        await asyncio.wait_for(c.logged_in.wait(), 10)
        content = udh + text.encode("utf-16-be")
        self._msg_ids += 1
        c.send(self._deliver(c, MSG_ID_BASE + 0x10_0000 + self._msg_ids, dest_id or c.src_id, phone, 0, 8, content,
                             udhi=int(bool(udh))))
        await c.writer.drain()

    async def active_test(self) -> None:
        """Send one ACTIVE_TEST on every live connection."""
        for c in list(self._conns.values()):
            seq = c.next_seq()
            c.pending_tests[seq] = time.monotonic()
            c.send(_pdu(ACTIVE_TEST, seq))

    # -- the protocol ----------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = _Conn(self, self.connections, reader, writer)
        self._conns[conn.n] = conn
        try:
            if not await self._login(conn):
                return
            conn.logged_in.set()
            if self.heartbeat_s:
                conn.spawn(self._heartbeats(conn))
            while True:
                head = await reader.readexactly(12)
                total, command_id, seq = struct.unpack(">III", head)
                body = await reader.readexactly(total - 12)
                if not self._handle(conn, command_id, seq, body):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
        finally:
            self._conns.pop(conn.n, None)
            conn.close()

    async def _login(self, conn: _Conn) -> bool:
        head = await conn.reader.readexactly(12)
        total, command_id, seq = struct.unpack(">III", head)
        body = await conn.reader.readexactly(total - 12)
        if command_id != CONNECT or len(body) != 27:
            return False
        source, auth, version, stamp = body[:6].decode("ascii", "replace"), body[6:22], body[22], struct.unpack(">I", body[23:27])[0]
        conn.v3 = version >= 0x30
        secret = self.accounts.get(source)
        if secret is None:
            status = 2
        elif auth != hashlib.md5(source.encode() + b"\0" * 9 + secret.encode() + b"%010d" % stamp).digest():
            status = 3
        elif version > self.max_version or version not in (0x20, 0x21, 0x30):
            status = 4
        else:
            status = 0
        self.logins.append((source, version, status))
        ismg = hashlib.md5(conn.status_bytes(status) + auth + (secret or "").encode()).digest()
        conn.send(_pdu(CONNECT | RESP, seq, conn.status_bytes(status) + ismg + bytes([min(version, self.max_version)])))
        await conn.writer.drain()
        return status == 0

    def _handle(self, conn: _Conn, command_id: int, seq: int, body: bytes) -> bool:
        """One PDU from the client; False ends the connection."""
        if command_id == SUBMIT:
            return self._submit(conn, seq, body)
        if command_id == ACTIVE_TEST:
            self.client_active_tests.append(time.monotonic())
            if not self.silent:
                conn.send(_pdu(ACTIVE_TEST | RESP, seq, b"\0"))
        elif command_id == ACTIVE_TEST | RESP:
            if conn.pending_tests.pop(seq, None) is not None:
                self.active_test_answers += 1
        elif command_id == DELIVER | RESP:
            msg_id = struct.unpack(">Q", body[:8])[0]
            result = int.from_bytes(body[8:], "big")
            self.deliver_resps.append((msg_id, result))
        elif command_id == TERMINATE:
            self.terminates += 1
            conn.send(_pdu(TERMINATE | RESP, seq))
            return False
        return True

    def _submit(self, conn: _Conn, seq: int, body: bytes) -> bool:
        f = parse_submit(body, conn.v3)
        udh, text = content_text(f["content"], f["udhi"], f["msg_fmt"])
        rec = Submitted(conn.n, seq, f["dest"], f["pk_total"], f["pk_number"], udh.hex(), text, f["msg_fmt"],
                        f["src_id"], f["service_id"], f["msg_src"], f["registered_delivery"], at=time.monotonic())
        self.submits.append(rec)
        conn.src_id = f["src_id"]
        conn.unanswered.add(seq)
        self.max_unanswered = max(self.max_unanswered, len(conn.unanswered))
        overflow = self.window is not None and len(conn.unanswered) > self.window
        if overflow:
            self.overflows += 1
        n = len(self.submits)
        if self.cut_after is not None and n >= self.cut_after:
            if not self.cut_repeat:  # once: the next link is served normally
                self.cut_after = self.hold_after = None
            self.cuts += 1
            return False
        if self.silent or (self.hold_after is not None and n > self.hold_after):
            conn.held.append((seq, rec))
            return True
        if self.latency_s:
            conn.spawn(self._answer_later(conn, seq, rec, overflow and self.refuse_overflow))
        else:
            self._answer(conn, seq, rec, overflow and self.refuse_overflow)
        return True

    def _result_for(self, rec: Submitted) -> int:
        now = time.monotonic()
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return 8
        if self.max_rate is not None:
            recent = [t for t in self._accept_times if now - t < 1.0]
            self._accept_times = recent
            if len(recent) >= self.max_rate:
                return 8
        result = self.results.get(rec.dest, 0)
        if result == 0:
            self._accept_times.append(now)
        return result

    async def _answer_later(self, conn: _Conn, seq: int, rec: Submitted, refuse: bool) -> None:
        await asyncio.sleep(self.latency_s)
        self._answer(conn, seq, rec, refuse)
        with contextlib.suppress(ConnectionError):
            await conn.writer.drain()

    def _answer(self, conn: _Conn, seq: int, rec: Submitted, refuse: bool) -> None:
        rec.result = 8 if refuse else self._result_for(rec)
        self._msg_ids += 1
        rec.msg_id = MSG_ID_BASE + self._msg_ids if rec.result == 0 else 0
        conn.unanswered.discard(seq)
        conn.send(_pdu(SUBMIT | RESP, seq, struct.pack(">Q", rec.msg_id) + conn.status_bytes(rec.result)))
        if rec.result == 0 and self.receipts and rec.registered_delivery == 1:
            stamp = time.strftime("%y%m%d%H%M")
            tid = 32 if conn.v3 else 21
            report = (struct.pack(">Q", rec.msg_id) + _pad(self.stats.get(rec.dest, "DELIVRD"), 7) + stamp.encode()
                      + stamp.encode() + _pad(rec.dest, tid) + struct.pack(">I", self._msg_ids))
            self._msg_ids += 1
            conn.send(self._deliver(conn, MSG_ID_BASE + 0x10_0000 + self._msg_ids, rec.src_id, rec.dest, 1, 0, report))

    def _deliver(self, conn: _Conn, msg_id: int, dest_id: str, src: str, registered: int, msg_fmt: int,
                 content: bytes, *, udhi: int = 0) -> bytes:
        tid = 32 if conn.v3 else 21
        body = (struct.pack(">Q", msg_id) + _pad(dest_id, 21) + _pad("", 10) + bytes([0, udhi, msg_fmt]) + _pad(src, tid)
                + (b"\0" if conn.v3 else b"") + bytes([registered, len(content)]) + content + b"\0" * (20 if conn.v3 else 8))
        return _pdu(DELIVER, conn.next_seq(), body)

    async def _heartbeats(self, conn: _Conn) -> None:
        assert self.heartbeat_s
        while True:
            await asyncio.sleep(self.heartbeat_s)
            seq = conn.next_seq()
            conn.pending_tests[seq] = time.monotonic()
            conn.send(_pdu(ACTIVE_TEST, seq))

    def report(self) -> dict[str, Any]:
        return {
            "logins": self.logins, "submits": [asdict(s) for s in self.submits], "texts": self.texts(),
            "max_unanswered": self.max_unanswered, "overflows": self.overflows, "deliver_resps": len(self.deliver_resps),
            "client_active_tests": len(self.client_active_tests), "active_test_answers": self.active_test_answers,
            "terminates": self.terminates, "connections": self.connections, "cuts": self.cuts,
        }


@contextlib.contextmanager
def in_thread(**options: Any) -> Iterator[CmppServer]:
    """A ``CmppServer(**options)`` running in an event loop of its own thread (for code that runs
    its own loops, such as the contract kit's checks); stopped on exit."""
    srv = CmppServer(**options)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(srv.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="cmpp-test-server", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the CMPP test server did not start")
    try:
        yield srv
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def _options(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.gateways.cmpp_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--account", action="append", default=[], help="SP_ID:SECRET (repeatable)")
    p.add_argument("--max-version", default="3.0", choices=["2.0", "3.0"])
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--result", action="append", default=[], help="NUMBER=RESULT (repeatable)")
    p.add_argument("--stat", action="append", default=[], help="NUMBER=STAT, e.g. UNDELIV (repeatable)")
    p.add_argument("--throttle-first", type=int, default=0)
    p.add_argument("--max-rate", type=float)
    p.add_argument("--window", type=int)
    p.add_argument("--heartbeat", type=float)
    p.add_argument("--cut-after", type=int)
    p.add_argument("--hold-after", type=int)
    p.add_argument("--report", help="write a JSON report here on exit")
    return p.parse_args(argv)


def _pairs(items: list[str], convert: Callable[[str], Any]) -> dict[str, Any]:
    return {k: convert(v) for k, v in (item.split("=", 1) for item in items)}


async def _main(argv: list[str] | None = None) -> None:
    o = _options(argv)
    accounts = dict(a.split(":", 1) for a in o.account) or None
    srv = CmppServer(accounts, max_version=0x30 if o.max_version == "3.0" else 0x20, latency_s=o.latency,
                     results=_pairs(o.result, int), stats=_pairs(o.stat, str), throttle_first=o.throttle_first,
                     max_rate=o.max_rate, window=o.window, heartbeat_s=o.heartbeat, cut_after=o.cut_after,
                     hold_after=o.hold_after, port=o.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with srv:
        print(f"PORT {srv.port}", flush=True)
        await stop.wait()
    if o.report:
        with open(o.report, "w", encoding="utf-8") as f:
            json.dump(srv.report(), f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    asyncio.run(_main())

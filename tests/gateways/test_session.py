"""The session layer of the operator links (``gateways.session``) against a real TCP server on
127.0.0.1 speaking a toy protocol: window, matching, heartbeats, lost links, reconnects, logins,
requests from the server, graceful stop; and ``session_gateway``'s parts and answers.

The toy protocol frames like CMPP (length, command, sequence; big-endian uint32) and has: LOGIN 1
(body: the password; the response body is one status byte), SUBMIT 4 (body: any; the response
body is one result byte: 0 ok, 8 throttled, 9 refused), PING 8, LOGOUT 2, REPORT 5 (server →
client). A response is 0x80000000 | command.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from broadcast.gateways.base import Outcome, SendItem
from broadcast.gateways.segments import GSM7, UCS2, Part, decode_gsm7, split
from broadcast.gateways.session import (
    Dialect,
    Frame,
    LinkDown,
    LoginRefused,
    ResponseTimeout,
    SessionPool,
    SessionSettings,
)
from broadcast.gateways.session_gateway import PartAnswer, PartReport, _aggregate

LOGIN, LOGOUT, SUBMIT, REPORT, PING, RESP = 1, 2, 4, 5, 8, 0x80000000


def pdu(command: int, seq: int, body: bytes = b"") -> bytes:
    return struct.pack(">III", 12 + len(body), command, seq) + body


class Toy(Dialect):
    name, header_len = "toy", 12

    def __init__(self, password: bytes = b"secret") -> None:
        self.password = password

    def parse_header(self, head: bytes) -> tuple[int, int, int, int]:
        total, command, seq = struct.unpack(">III", head)
        return total, command, seq, 0

    def is_response(self, command_id: int) -> bool:
        return bool(command_id & RESP)

    def login(self, seq: int) -> bytes:
        return pdu(LOGIN, seq, self.password)

    def login_refusal(self, resp: Frame) -> str | None:
        return None if resp.body == b"\x00" else f"status {resp.body[0]}"

    def keepalive(self, seq: int) -> bytes:
        return pdu(PING, seq)

    def logout(self, seq: int) -> bytes:
        return pdu(LOGOUT, seq)

    def is_keepalive(self, frame: Frame) -> bool:
        return frame.command_id == PING

    def is_logout(self, frame: Frame) -> bool:
        return frame.command_id == LOGOUT

    def answer(self, frame: Frame) -> bytes | None:
        return pdu(RESP | frame.command_id, frame.seq, b"\x00" if frame.command_id == REPORT else b"")


@dataclass
class ToyServer:
    """A real server: counts what it sees; its behaviour is set by the test."""

    latency_s: float = 0.0
    answer_pings: bool = True
    answer_submits: bool = True
    cut_after: int | None = None  # close the connection after this many submits (total)
    results: Callable[[bytes], int] = lambda body: 0
    logins: int = 0
    submits: list[bytes] = field(default_factory=list)
    outstanding: int = 0
    max_outstanding: int = 0
    pings: int = 0
    report_answers: list[int] = field(default_factory=list)
    logouts: int = 0
    events: list[str] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0

    async def __aenter__(self) -> ToyServer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self.writers:
            w.close()
        self.server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                total, command, seq = struct.unpack(">III", await reader.readexactly(12))
                body = await reader.readexactly(total - 12)
                if command == LOGIN:
                    self.logins += 1
                    writer.write(pdu(RESP | LOGIN, seq, b"\x00" if body == b"secret" else b"\x03"))
                elif command == SUBMIT:
                    self.submits.append(body)
                    self.events.append("submit")
                    self.outstanding += 1
                    self.max_outstanding = max(self.max_outstanding, self.outstanding)
                    if self.cut_after is not None and len(self.submits) >= self.cut_after:
                        self.cut_after = None
                        writer.close()
                        return
                    if self.answer_submits:
                        asyncio.get_running_loop().create_task(self.respond(writer, seq, body))
                elif command == PING:
                    self.pings += 1
                    if self.answer_pings:
                        writer.write(pdu(RESP | PING, seq))
                elif command == LOGOUT:
                    self.logouts += 1
                    self.events.append("logout")
                    writer.write(pdu(RESP | LOGOUT, seq))
                elif command == RESP | REPORT:
                    self.report_answers.append(seq)
                elif command == RESP | PING:
                    self.events.append("pong")
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def respond(self, writer: asyncio.StreamWriter, seq: int, body: bytes) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.outstanding -= 1
        if not writer.is_closing():
            writer.write(pdu(RESP | SUBMIT, seq, bytes([self.results(body)])))


def pool_for(srv: ToyServer, password: bytes = b"secret", on_request=None, **kw) -> SessionPool:
    settings = SessionSettings("127.0.0.1", srv.port, **{"response_timeout_s": 2.0, "backoff_s": 0.01, **kw})
    return SessionPool(lambda: Toy(password), settings, on_request)


def submit(body: bytes) -> Callable[[int], bytes]:
    return lambda seq: pdu(SUBMIT, seq, body)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_the_window_bounds_unacknowledged_requests_and_answers_match_their_requests() -> None:
    async def go() -> tuple[ToyServer, list[Frame]]:
        async with ToyServer(latency_s=0.01, results=lambda body: body[0] % 3) as srv:
            pool = pool_for(srv, window=4, connections=2)
            frames = await asyncio.gather(*(pool.request(submit(bytes([i]))) for i in range(60)))
            await pool.aclose()
            return srv, frames

    srv, frames = run(go())
    assert len(srv.submits) == 60 and srv.logins == 2
    assert srv.max_outstanding <= 4 * 2
    assert [f.body[0] for f in frames] == [i % 3 for i in range(60)]  # each got its own answer


def test_window_one_sends_one_at_a_time() -> None:
    async def go() -> ToyServer:
        async with ToyServer(latency_s=0.005) as srv:
            pool = pool_for(srv, window=1)
            await asyncio.gather(*(pool.request(submit(b"x")) for _ in range(20)))
            await pool.aclose()
            return srv

    assert run(go()).max_outstanding == 1


def test_a_link_cut_mid_window_says_which_requests_were_written_and_the_next_request_reconnects() -> None:
    async def go() -> tuple[ToyServer, list[object], SessionPool]:
        async with ToyServer(latency_s=0.2, cut_after=5) as srv:
            pool = pool_for(srv, window=8)
            got = await asyncio.gather(*(pool.request(submit(b"x")) for _ in range(5)), return_exceptions=True)
            again = await pool.request(submit(b"y"))  # a new connection, logged in again
            await pool.aclose()
            return srv, [*got, again], pool

    srv, got, pool = run(go())
    assert all(isinstance(g, LinkDown) and g.sent for g in got[:5])  # written, unanswered: in doubt
    assert isinstance(got[5], Frame) and srv.logins == 2 and pool.connects == 2


def test_no_answer_is_a_response_timeout_which_counts_as_written() -> None:
    async def go() -> BaseException:
        async with ToyServer(answer_submits=False) as srv:
            pool = pool_for(srv, response_timeout_s=0.2)
            try:
                await pool.request(submit(b"x"))
            except LinkDown as exc:
                return exc
            finally:
                await pool.aclose()
            raise AssertionError("no timeout")

    exc = run(go())
    assert isinstance(exc, ResponseTimeout) and exc.sent


def test_an_unreachable_server_is_not_sent_after_backoff() -> None:
    async def go() -> tuple[BaseException, float]:
        async with ToyServer() as srv:
            port = srv.port
        settings = SessionSettings("127.0.0.1", port, backoff_s=0.05, connect_tries=3)
        pool = SessionPool(Toy, settings)
        t0 = time.monotonic()
        with pytest.raises(LinkDown) as info:
            await pool.request(submit(b"x"))
        return info.value, time.monotonic() - t0

    exc, took = run(go())
    assert isinstance(exc, LinkDown) and not exc.sent and "cannot connect" in exc.reason
    assert took >= 0.05 + 0.1  # waited 50 ms, then 100 ms, between the three attempts


def test_a_refused_login_is_final_and_not_tried_again() -> None:
    async def go() -> tuple[ToyServer, list[BaseException]]:
        async with ToyServer() as srv:
            pool = pool_for(srv, password=b"wrong")
            errors = []
            for _ in range(3):
                try:
                    await pool.request(submit(b"x"))
                except LoginRefused as exc:
                    errors.append(exc)
            await pool.aclose()
            return srv, errors

    srv, errors = run(go())
    assert len(errors) == 3 and errors[0].reason == "status 3"
    assert srv.logins == 1 and srv.submits == []


def test_heartbeats_keep_an_idle_link_and_a_silent_server_is_declared_dead_within_c_plus_n_t() -> None:
    async def go(answer: bool) -> tuple[ToyServer, SessionPool, float]:
        async with ToyServer(answer_pings=answer) as srv:
            pool = pool_for(srv, idle_s=0.1, heartbeat_timeout_s=0.1, heartbeat_tries=3)
            await pool.ping()
            session = pool.sessions[0]
            assert session is not None
            t0 = time.monotonic()
            while session.alive and time.monotonic() - t0 < 1.5:
                await asyncio.sleep(0.01)
            dead_after = time.monotonic() - t0 if not session.alive else -1.0
            await pool.aclose()
            return srv, pool, dead_after

    srv, _, dead_after = run(go(True))
    assert dead_after == -1.0 and srv.pings >= 5  # alive for 1.5 s on its heartbeats
    srv, _, dead_after = run(go(False))
    assert srv.pings == 3 and 0.35 <= dead_after <= 0.1 + 3 * 0.1 + 0.25  # C + N × T


def test_the_servers_heartbeat_and_requests_are_answered_after_they_are_handled() -> None:
    handled: list[list[int]] = []

    async def on_request(frames: list[Frame]) -> None:
        await asyncio.sleep(0.05)  # recording them takes a while: no answer before it is done
        handled.append([f.seq for f in frames])

    async def go() -> ToyServer:
        async with ToyServer() as srv:
            pool = pool_for(srv, on_request=on_request)
            await pool.ping()
            writer = srv.writers[0]
            writer.write(pdu(PING, 900))
            for seq in range(1, 6):
                writer.write(pdu(REPORT, seq, b"r"))
            await asyncio.sleep(0.02)
            assert srv.report_answers == [] and "pong" in srv.events
            await asyncio.sleep(0.3)
            await pool.aclose()
            return srv

    srv = run(go())
    assert sorted(s for batch in handled for s in batch) == [1, 2, 3, 4, 5]
    assert len(handled) <= 2  # what arrived while one batch was handled came as one batch
    assert srv.report_answers == [1, 2, 3, 4, 5]


def test_a_request_that_cannot_be_handled_is_not_answered() -> None:
    async def on_request(frames: list[Frame]) -> None:
        raise RuntimeError("database gone")

    async def go() -> ToyServer:
        async with ToyServer() as srv:
            pool = pool_for(srv, on_request=on_request)
            await pool.ping()
            srv.writers[0].write(pdu(REPORT, 7, b"r"))
            await asyncio.sleep(0.1)
            await pool.aclose()
            return srv

    assert run(go()).report_answers == []  # the server keeps it and sends it again


def test_graceful_stop_drains_the_window_then_logs_out() -> None:
    async def go() -> tuple[ToyServer, list[Frame]]:
        async with ToyServer(latency_s=0.1) as srv:
            pool = pool_for(srv, window=8)
            tasks = [asyncio.create_task(pool.request(submit(b"x"))) for _ in range(6)]
            await asyncio.sleep(0.02)
            await pool.aclose()
            frames = await asyncio.gather(*tasks)
            with pytest.raises(LinkDown) as info:
                await pool.request(submit(b"late"))
            assert not info.value.sent
            return srv, frames

    srv, frames = run(go())
    assert len(frames) == 6 and srv.logouts == 1
    assert srv.events == ["submit"] * 6 + ["logout"]


# -- segments ---------------------------------------------------------------------------------


def join(parts: list[Part], coding: int) -> str:
    out = []
    for p in parts:
        payload = p.payload[6:] if p.udhi else p.payload
        out.append(payload.decode("utf-16-be", "surrogatepass") if coding == UCS2 else decode_gsm7(payload))
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def test_a_chinese_text_of_three_parts_carries_the_concatenation_header() -> None:
    text = "【城南新区】" + "精神早餐：不忘初心，牢记使命。" * 10  # 156 characters: 67 + 67 + 22
    coding, parts = split(text, 0x2A)
    assert coding == UCS2 and [p.number for p in parts] == [1, 2, 3]
    assert [p.payload[:6] for p in parts] == [bytes([5, 0, 3, 0x2A, 3, i]) for i in (1, 2, 3)]
    assert [len(p.payload) - 6 for p in parts] == [134, 134, (156 - 134) * 2]
    assert join(parts, coding) == text


def test_one_part_texts_have_no_header() -> None:
    assert split("早安", 1) == (UCS2, [Part("早安".encode("utf-16-be"), False, 1, 1)])
    coding, (part,) = split("Hello {x}", 1)
    assert coding == GSM7 and part.payload == b"Hello \x1b(x\x1b)" and not part.udhi


def test_a_surrogate_pair_and_an_escape_are_never_split() -> None:
    text = "字" * 66 + "𠀀" + "字" * 10  # U+20000 would straddle units 67 and 68
    coding, parts = split(text, 9)
    assert len(parts[0].payload) - 6 == 66 * 2 and join(parts, coding) == text
    gsm = "a" * 152 + "€" + "b" * 20
    coding, parts = split(gsm, 9)
    assert coding == GSM7 and parts[0].payload[6:] == b"a" * 152 and join(parts, coding) == gsm


def test_ucs2_only_links_send_a_gsm_text_as_ucs2() -> None:
    coding, parts = split("x" * 100, 3, gsm7=False)
    assert coding == UCS2 and [len(p.payload) - 6 for p in parts] == [134, 66]


# -- answers of the parts of one delivery -----------------------------------------------------


OK1, OK2 = PartAnswer(True, "11"), PartAnswer(True, "12")
REFUSED = PartAnswer(False, code="9", detail="bad destination", recipient_fault=True)
THROTTLED = PartAnswer(False, code="8", detail="flow control", throttled=True)


def test_a_delivery_is_accepted_only_when_every_part_is() -> None:
    r = _aggregate(1, [OK1, OK2, PartAnswer(True, "13")])
    assert r.outcome is Outcome.ACCEPTED and r.provider_id == "11" and r.detail == "3 parts"
    r = _aggregate(1, [OK1, OK2, REFUSED])
    assert r.outcome is Outcome.PERMANENT and r.code == "partial" and r.provider_id == "11"
    assert r.detail == "2 of 3 parts accepted; part 3: 9 bad destination"


def test_a_lost_part_puts_the_delivery_in_doubt_and_an_unsent_one_is_safe_to_retry() -> None:
    r = _aggregate(1, [OK1, LinkDown("link lost", sent=True)])
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent
    r = _aggregate(1, [LinkDown("cannot connect", sent=False)])
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent
    r = _aggregate(1, [THROTTLED])
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent and not r.recipient_fault


def test_the_fast_accepted_result_is_an_ordinary_send_result() -> None:
    from dataclasses import FrozenInstanceError, fields

    from broadcast.gateways.base import SendResult
    from broadcast.gateways.session_gateway import accepted, part_accepted

    assert part_accepted("m1") == PartAnswer(True, msg_id="m1") and type(part_accepted("m1")) is PartAnswer
    assert part_accepted("m2", "ESME_ROK") == PartAnswer(True, msg_id="m2", code="ESME_ROK")
    fast, slow = accepted(7, "m7"), SendResult(7, Outcome.ACCEPTED, provider_id="m7")
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert [getattr(fast, f.name) for f in fields(SendResult)] == [getattr(slow, f.name) for f in fields(SendResult)]
    with pytest.raises(FrozenInstanceError):
        fast.provider_id = "other"  # type: ignore[misc]


def test_a_refused_recipient_fails_alone_and_a_refused_login_pauses() -> None:
    r = _aggregate(1, [REFUSED])
    assert r.outcome is Outcome.PERMANENT and r.recipient_fault and not r.pause
    r = _aggregate(1, [LoginRefused("status 3: authentication")])
    assert r.outcome is Outcome.PERMANENT and r.pause and "authentication" in (r.detail or "")


def test_a_report_per_part_makes_one_receipt_per_delivery() -> None:
    from datetime import UTC, datetime

    from broadcast.gateways.session_gateway import SessionGateway, _Tally

    class Bookkeeping(SessionGateway):  # only the report bookkeeping, no link
        dialect = session_settings = submit_pdu = classify = parse_request = None  # type: ignore[assignment]

    gw = Bookkeeping.__new__(Bookkeeping)
    gw._parts = __import__("collections").OrderedDict()
    at = datetime(2026, 12, 7, tzinfo=UTC)
    tally = _Tally(5, 3)
    for n, mid in enumerate(["a", "b", "c"], 1):
        gw._remember_part(mid, tally, n)
    assert gw._receipt(PartReport("b", "delivered", "DELIVRD", at)) is None
    assert gw._receipt(PartReport("a", "delivered", "DELIVRD", at)) is None
    last = gw._receipt(PartReport("c", "delivered", "DELIVRD", at))
    assert last is not None and (last.delivery_id, last.provider_id, last.status) == (5, "a", "delivered")
    assert not gw._parts  # forgotten once settled
    gw._remember("solo", 6)  # a one-part delivery: its id maps to the delivery id alone
    solo = gw._receipt(PartReport("solo", "delivered", "DELIVRD", at))
    assert solo is not None and (solo.delivery_id, solo.provider_id, solo.status) == (6, "solo", "delivered")
    assert not gw._parts
    unknown = gw._receipt(PartReport("zz", "failed", "UNDELIV", at))  # sent by an earlier process
    assert unknown is not None and (unknown.delivery_id, unknown.provider_id) == (None, "zz")
    item = SendItem(1, "+8613800000000", "x")
    assert item.delivery_id == 1

"""Long-lived TCP sessions for the operator protocols (CMPP, SMPP): one layer, any dialect.

An HTTP gateway makes one request per call; an operator link is a login followed by a stream of
PDUs in both directions on one connection. This module owns everything about that stream that
does not depend on the protocol:

* **login** on connect (``Dialect.login`` / ``login_refusal``); a refused login raises
  ``LoginRefused`` with the server's reason, and the pool never tries that account again;
* a **window** of unacknowledged requests per connection (``window``), sequence numbers, each
  response matched to its request, a per-response timeout (``ResponseTimeout``);
* **heartbeats**: after ``idle_s`` (C) with nothing received, a keep-alive; no answer within
  ``heartbeat_timeout_s`` (T) is a miss, and ``heartbeat_tries`` (N) misses in a row declare the
  link dead, so a dead link is noticed within C + N × T. The server's own heartbeats are answered;
* **requests from the server** (status reports, mobile-originated messages) go to ``on_request``
  in arrival order, as many at once as arrived while the last batch was handled, and are answered
  only after it returns, so nothing the server is told we have is only in memory (the gateway's
  sink records a batch in one transaction);
* **several connections** per account (``connections``), each with its own window, reconnected
  with exponential backoff;
* **graceful stop** (``aclose``): no new requests, the windows drain (up to ``drain_s``), then a
  logout on each connection.

What a lost link means for a request is the one thing callers must get right: ``LinkDown(sent=
False)`` — it never left, safe to send again; ``LinkDown(sent=True)`` or ``ResponseTimeout`` — it
was written, the server may have it: the delivery is in doubt, never resent silently.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Dialect", "Frame", "LinkDown", "LoginRefused", "ResponseTimeout", "Session", "SessionPool",
           "SessionSettings"]

log = logging.getLogger("broadcast.gateways.session")

MAX_PDU = 64 * 1024  # no CMPP or SMPP PDU comes near this: a larger length is a broken stream
SEQ_MAX = 0x7FFFFFFF  # SMPP's highest sequence number; CMPP's is higher, the same wrap serves both


@dataclass(frozen=True)
class Frame:
    """One PDU as read from the link."""

    command_id: int
    seq: int
    status: int  # SMPP command_status; 0 for CMPP (its statuses are in the body)
    body: bytes  # after the header
    raw: bytes  # the whole PDU, header included


class Dialect(abc.ABC):
    """What the session needs to know of one protocol: encoding only, no I/O."""

    name: str
    header_len: int

    @abc.abstractmethod
    def parse_header(self, head: bytes) -> tuple[int, int, int, int]:
        """``(total_length, command_id, seq, status)`` of a header of ``header_len`` octets."""

    @abc.abstractmethod
    def is_response(self, command_id: int) -> bool: ...

    @abc.abstractmethod
    def login(self, seq: int) -> bytes: ...

    @abc.abstractmethod
    def login_refusal(self, resp: Frame) -> str | None:
        """None when the login succeeded, else why not (the server's status, in words)."""

    @abc.abstractmethod
    def keepalive(self, seq: int) -> bytes: ...

    @abc.abstractmethod
    def logout(self, seq: int) -> bytes: ...

    @abc.abstractmethod
    def is_keepalive(self, frame: Frame) -> bool: ...

    @abc.abstractmethod
    def is_logout(self, frame: Frame) -> bool: ...

    @abc.abstractmethod
    def answer(self, frame: Frame) -> bytes | None:
        """Our response to a request the server sent (None: it wants none)."""


class LinkDown(Exception):
    """The link is gone (or could not be had). ``sent``: our PDU had been written before."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason, self.sent = reason, sent


class ResponseTimeout(LinkDown):
    """Written, and no response within ``response_timeout_s``: the server may have it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, sent=True)


class LoginRefused(Exception):
    """The server refused the account's login; ``reason`` has its status."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class SessionSettings:
    host: str
    port: int
    window: int = 16  # unacknowledged requests per connection
    connections: int = 1
    response_timeout_s: float = 10.0
    idle_s: float = 60.0  # C
    heartbeat_timeout_s: float = 60.0  # T
    heartbeat_tries: int = 3  # N
    connect_timeout_s: float = 5.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_tries: int = 3  # attempts one request makes before it gives up (LinkDown, not sent)
    drain_s: float = 10.0


OnRequest = Callable[[list[Frame]], Awaitable[None]]


class Session:
    """One connection: open (connect + login), request, close. Made by ``SessionPool``."""

    def __init__(self, dialect: Dialect, settings: SessionSettings, on_request: OnRequest | None) -> None:
        self.dialect, self.settings, self.on_request = dialect, settings, on_request
        self.window = asyncio.Semaphore(settings.window)
        self.pending: dict[int, asyncio.Future[Frame]] = {}
        self.noting: dict[int, Callable[[Frame], None]] = {}  # seq -> what to note of its response at once
        self.alive = False
        self.last_rx = time.monotonic()
        self._seq = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._beat: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._why = "not connected"
        self._lost = False
        self._out: list[bytes] = []  # PDUs written in this turn of the loop, sent together at its end
        self._closing = False

    def next_seq(self) -> int:
        self._seq = self._seq % SEQ_MAX + 1
        return self._seq

    # -- open ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and log in. ``LoginRefused``, or ``OSError``/``TimeoutError`` for the transport."""
        s = self.settings
        self._reader, writer = await asyncio.wait_for(asyncio.open_connection(s.host, s.port), s.connect_timeout_s)
        self._writer = writer
        try:
            writer.write(self.dialect.login(self.next_seq()))
            resp = await asyncio.wait_for(self._read(), s.response_timeout_s)
            refusal = self.dialect.login_refusal(resp)
        except BaseException:
            writer.close()
            raise
        if refusal is not None:
            writer.close()
            raise LoginRefused(refusal)
        self.alive = True
        self.last_rx = time.monotonic()
        self._beat = asyncio.create_task(self._heartbeat())
        self._tasks = [asyncio.create_task(self._read_loop()), self._beat, asyncio.create_task(self._answer_loop())]

    async def _read(self) -> Frame:
        assert self._reader is not None
        n = self.dialect.header_len
        head = await self._reader.readexactly(n)
        total, command_id, seq, status = self.dialect.parse_header(head)
        if not n <= total <= MAX_PDU:
            raise ConnectionError(f"{self.dialect.name}: a PDU length of {total} octets (a broken stream)")
        body = await self._reader.readexactly(total - n)
        return Frame(command_id, seq, status, body, head + body)

    # -- requests ---------------------------------------------------------------------------

    @property
    def free(self) -> bool:
        return self.alive and not self.window.locked()

    async def request(self, build: Callable[[int], bytes], *, windowed: bool = True,
                      timeout_s: float | None = None, note: Callable[[Frame], None] | None = None) -> Frame:
        """Write ``build(seq)`` and wait for its response (see the module docstring for errors).
        ``note(response)`` runs in the read loop as the response is read, before the next PDU is:
        a status report the server writes right behind a submit's response then finds the part's
        id already noted (the task awaiting the response resumes only some loop turns later)."""
        if not windowed:
            return await self._exchange(build, timeout_s, note)
        async with self.window:
            return await self._exchange(build, timeout_s, note)

    async def _exchange(self, build: Callable[[int], bytes], timeout_s: float | None,
                        note: Callable[[Frame], None] | None = None) -> Frame:
        writer = self._writer
        if not self.alive or writer is None or writer.is_closing():
            raise LinkDown(self._why, sent=False)
        seq = self.next_seq()
        data = build(seq)
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.pending[seq] = fut
        if note is not None:
            self.noting[seq] = note
        self._send(data)
        limit = timeout_s or self.settings.response_timeout_s
        timer = asyncio.get_running_loop().call_later(limit, self._expire, fut, seq, limit)  # cheaper than wait_for
        try:
            return await fut
        finally:
            timer.cancel()
            self.pending.pop(seq, None)
            self.noting.pop(seq, None)

    def _expire(self, fut: asyncio.Future[Frame], seq: int, limit: float) -> None:
        if not fut.done():
            fut.set_exception(ResponseTimeout(f"{self.dialect.name}: no response to request {seq} within {limit:g} s"))

    # -- the link's own traffic ---------------------------------------------------------------

    async def _read_loop(self) -> None:
        why = "the server closed the connection"
        try:
            while True:
                frame = await self._read()
                self.last_rx = time.monotonic()
                if self.dialect.is_response(frame.command_id):
                    fut = self.pending.get(frame.seq)
                    if fut is not None and not fut.done():
                        note = self.noting.pop(frame.seq, None)
                        if note is not None:
                            note(frame)
                        fut.set_result(frame)
                    else:
                        log.warning("%s: a response to no request (seq %d), ignored", self.dialect.name, frame.seq)
                elif self.dialect.is_keepalive(frame):
                    self._write(self.dialect.answer(frame))
                elif self.dialect.is_logout(frame):
                    self._write(self.dialect.answer(frame))
                    why = "the server ended the session"
                    break
                else:
                    self._inbox.put_nowait(frame)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            why = f"link lost: {exc or type(exc).__name__}"
        self._lose(why)

    async def _answer_loop(self) -> None:
        """Requests from the server, in order, a batch at a time: handled, then answered."""
        done = False
        while not done:
            batch = [await self._inbox.get()]
            while not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            frames = [f for f in batch if f is not None]
            done = len(frames) < len(batch)
            if not frames:
                continue
            if self.on_request is not None:
                try:
                    await self.on_request(frames)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug or no database: unanswered, so the server sends them again
                    log.exception("%s: requests from the server could not be handled", self.dialect.name)
                    continue
            if self.alive:
                for frame in frames:
                    self._write(self.dialect.answer(frame))

    async def _heartbeat(self) -> None:
        s, misses = self.settings, 0
        while self.alive:
            idle = time.monotonic() - self.last_rx
            if idle < s.idle_s:
                await asyncio.sleep(s.idle_s - idle)
                continue
            try:
                await self._exchange(self.dialect.keepalive, s.heartbeat_timeout_s)
                misses = 0
            except ResponseTimeout:
                misses += 1
                if misses >= s.heartbeat_tries:
                    self._lose(f"no answer to {misses} heartbeats ({s.heartbeat_timeout_s:g} s each)")
                    return
            except LinkDown:
                return

    def _write(self, data: bytes | None) -> None:
        if data is not None:
            self._send(data)

    def _send(self, data: bytes) -> None:
        """Queue a PDU for the socket: what the loop's tasks write in one turn goes out in one
        system call (a window of responses answered at once is refilled with one write)."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(out))

    def _lose(self, why: str) -> None:
        """The link is dead: every request waiting for a response learns it was written."""
        if self._lost:
            return
        if why != "closed" and not self._closing:
            log.warning("%s %s:%d: %s", self.dialect.name, self.settings.host, self.settings.port, why)
        self._lost, self.alive, self._why = True, False, why
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(LinkDown(why, sent=True))
        self.pending.clear()
        self._inbox.put_nowait(None)
        if self._writer is not None:
            self._writer.close()
        if self._beat is not None and self._beat is not asyncio.current_task():
            self._beat.cancel()  # the read loop ends on the closed socket, the answer loop on None

    # -- close --------------------------------------------------------------------------

    async def close(self, drain_s: float) -> None:
        """Wait for the window to drain, log out, close."""
        give_up = time.monotonic() + drain_s
        while self.alive and self.pending and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        self._closing = True  # a server that hangs up after our logout ends the link quietly
        if self.alive:
            with contextlib.suppress(LinkDown, OSError):
                await self._exchange(self.dialect.logout, min(self.settings.response_timeout_s, 5.0))
        self._lose("closed")
        read, _, answers = self._tasks or (None, None, None)
        if answers is not None:  # what the server sent before is handled (not answered: it comes again)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(answers, 5.0)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._writer is not None:
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
        self._writer = None


class SessionPool:
    """Up to ``connections`` sessions of one account; requests spread over them."""

    def __init__(self, dialect_factory: Callable[[], Dialect], settings: SessionSettings,
                 on_request: OnRequest | None = None) -> None:
        self.dialect_factory, self.settings, self.on_request = dialect_factory, settings, on_request
        self.sessions: list[Session | None] = [None] * max(1, settings.connections)
        self.closing = False
        self.refused: str | None = None
        self.connects = 0  # successful logins (a reconnect counts)
        self._locks: list[asyncio.Lock] | None = None
        self._retry_at = 0.0
        self._backoff = settings.backoff_s
        self._next = 0

    @property
    def in_flight(self) -> int:
        return sum(len(s.pending) for s in self.sessions if s is not None)

    async def request(self, build: Callable[[int], bytes], note: Callable[[Frame], None] | None = None) -> Frame:
        """One windowed request on some connection (connecting as needed); see the module docstring
        and ``Session.request`` for ``note``."""
        session = await self._session()
        return await session.request(build, note=note)

    async def ping(self) -> None:
        """Log in on one connection (``LoginRefused`` / ``LinkDown``)."""
        await self._connected(0)

    async def _session(self) -> Session:
        if self._locks is None:
            self._locks = [asyncio.Lock() for _ in self.sessions]
        n = len(self.sessions)
        for k in range(n):  # a live connection with room in its window, round robin
            i = (self._next + k) % n
            s = self.sessions[i]
            if s is not None and s.free:
                self._next = i + 1
                return s
        for i in range(n):  # else one not connected yet (or lost) that nobody is connecting
            s = self.sessions[i]
            if (s is None or not s.alive) and not self._locks[i].locked():
                return await self._connected(i)
        i = self._next % n  # every window full: queue on the next one
        self._next = i + 1
        return await self._connected(i)

    async def _connected(self, i: int) -> Session:
        if self._locks is None:
            self._locks = [asyncio.Lock() for _ in self.sessions]
        async with self._locks[i]:
            s = self.sessions[i]
            if s is not None and s.alive:
                return s
            last: BaseException | None = None
            for _ in range(self.settings.connect_tries):
                if self.closing:
                    raise LinkDown("the gateway is closing", sent=False)
                if self.refused is not None:
                    raise LoginRefused(self.refused)
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                session = Session(self.dialect_factory(), self.settings, self.on_request)
                try:
                    await session.open()
                except LoginRefused as exc:
                    self.refused = exc.reason
                    raise
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                    last = exc
                    self._retry_at = time.monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, self.settings.backoff_max_s)
                    continue
                self._backoff, self._retry_at = self.settings.backoff_s, 0.0
                self.sessions[i] = session
                self.connects += 1
                return session
            h = self.settings
            raise LinkDown(f"cannot connect to {h.host}:{h.port}: {last or 'no attempt'}", sent=False)

    async def aclose(self) -> None:
        """No new requests; drain, log out and close every connection. Idempotent."""
        self.closing = True
        live = [s for s in self.sessions if s is not None]
        self.sessions = [None] * len(self.sessions)
        await asyncio.gather(*(s.close(self.settings.drain_s) for s in live), return_exceptions=True)

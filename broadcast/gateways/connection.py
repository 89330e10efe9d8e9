"""One connection of an operator link (CMPP, SMPP): the PDU stream, its window, timeouts, heartbeats.

``session.SessionPool`` holds these; ``session``'s docstring says what the layer guarantees. Here:
``Frame`` (one PDU read), ``Dialect`` (what the connection needs of a protocol: encoding only),
the errors a request can end in, ``SessionSettings``, and ``Session``, one TCP connection as an
``asyncio.Protocol``: bytes are cut into PDUs where they arrive, a response completes its
request's future at once, and one timer per connection expires requests that waited too long.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

__all__ = ["Dialect", "Frame", "LinkDown", "LoginRefused", "OnRequest", "ResponseTimeout", "Session", "SessionSettings"]

log = logging.getLogger("broadcast.gateways.session")

MAX_PDU = 64 * 1024  # no CMPP or SMPP PDU comes near this: a larger length is a broken stream
SEQ_MAX = 0x7FFFFFFF  # SMPP's highest sequence number; CMPP's is higher, the same wrap serves both


class Frame(NamedTuple):
    """One PDU as read from the link."""

    command_id: int
    seq: int
    status: int  # SMPP command_status; 0 for CMPP (its statuses are in the body)
    body: bytes  # after the header
    raw: bytes  # the whole PDU, header included


_new_frame = tuple.__new__  # one Frame per PDU read: the named tuple's own __new__ is a Python function


class Dialect(abc.ABC):
    """What the session needs to know of one protocol: encoding only, no I/O."""

    name: str
    header_len: int

    @abc.abstractmethod
    def parse_header(self, head: bytes) -> tuple[int, int, int, int]:
        """``(total_length, command_id, seq, status)`` of a header of ``header_len`` octets."""

    def unpack_header(self, data: bytes, pos: int) -> tuple[int, int, int, int]:
        """``parse_header`` of the header at ``data[pos:]`` (a dialect may unpack it in place)."""
        return self.parse_header(data[pos:pos + self.header_len])

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
T = TypeVar("T")


class _Link(asyncio.Protocol):
    """The transport's callbacks, handed to the session: bytes in, the connection gone."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def data_received(self, data: bytes) -> None:
        self.session._feed(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._gone(exc)


class Session:
    """One connection: open (connect + login), request, close. Made by ``SessionPool``.

    The connection is an ``asyncio.Protocol``: each chunk of bytes received is cut into PDUs where
    it arrives (``_feed``), a response completes its request's future at once, and one timer per
    connection, armed for the earliest deadline, expires the requests that waited too long (no
    timer, task or ``wait_for`` per request)."""

    def __init__(self, dialect: Dialect, settings: SessionSettings, on_request: OnRequest | None) -> None:
        self.dialect, self.settings, self.on_request = dialect, settings, on_request
        self.pending: dict[int, tuple[asyncio.Future[Any], Callable[[Frame], Any] | None, float, float, bool]] = {}
        self.alive = False
        self.last_rx = time.monotonic()
        self._seq = 0
        self._used = 0  # window slots taken
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()  # sessions are made by the pool, in the loop
        self._login: asyncio.Future[Frame] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._rest = b""  # the start of a PDU whose end has not arrived
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
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
        s, loop = self.settings, asyncio.get_running_loop()
        self._loop = loop
        self._closed = loop.create_future()
        transport, _ = await asyncio.wait_for(loop.create_connection(lambda: _Link(self), s.host, s.port),
                                              s.connect_timeout_s)
        self._transport = transport
        self._login = loop.create_future()
        try:
            transport.write(self.dialect.login(self.next_seq()))
            resp = await asyncio.wait_for(self._login, s.response_timeout_s)
            refusal = self.dialect.login_refusal(resp)
        except BaseException:
            transport.close()
            raise
        if refusal is not None:
            transport.close()
            raise LoginRefused(refusal)
        self.alive = True
        self.last_rx = time.monotonic()
        self._beat = asyncio.create_task(self._heartbeat())
        self._tasks = [self._beat, asyncio.create_task(self._answer_loop())]

    # -- requests ---------------------------------------------------------------------------

    @property
    def free(self) -> bool:
        return self.alive and self._used < self.settings.window

    async def request(self, build: Callable[[int], bytes], *, windowed: bool = True,
                      timeout_s: float | None = None) -> Frame:
        """Write ``build(seq)`` and wait for its response (see the module docstring for errors)."""
        return cast(Frame, await self.call(build, None, windowed=windowed, timeout_s=timeout_s))

    def call(self, build: Callable[[int], bytes], read: Callable[[Frame], T] | None, *,
             windowed: bool = True, timeout_s: float | None = None) -> Awaitable[T]:
        """``request``, answered with ``read(response)`` instead of the response. ``read`` runs as
        the response is read, before the next PDU of the same chunk is: a status report the server
        writes right behind a submit's response then finds the part's id already noted (the task
        awaiting the response resumes only some loop turns later).

        A window slot is taken before the write and given back when the request ends (answered,
        timed out, or the link lost), not when its caller resumes. With room in the window the
        request is written at once and its future returned (no coroutine in between); ``LinkDown``
        may then be raised by the call itself rather than by the await."""
        if not windowed:
            return self._start(build, timeout_s, read, False)
        if self._used < self.settings.window and not self._waiters:
            self._used += 1
            return self._start(build, timeout_s, read, True)
        return self._call_when_free(build, timeout_s, read)

    async def _call_when_free(self, build: Callable[[int], bytes], timeout_s: float | None,
                              read: Callable[[Frame], T] | None) -> T:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # a slot was handed over as we were cancelled: pass it on
            raise
        return await self._start(build, timeout_s, read, True)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self._used -= 1

    def _start(self, build: Callable[[int], bytes], timeout_s: float | None,
               read: Callable[[Frame], T] | None, windowed: bool) -> asyncio.Future[T]:
        """Write the request; its future is completed by ``_answered``, ``_sweep`` or ``_lose``."""
        if not self.alive:  # a link is not alive once it is closing (``_lose`` comes first)
            if windowed:
                self._release()
            raise LinkDown(self._why, sent=False)
        self._seq = seq = self._seq % SEQ_MAX + 1
        try:
            data = build(seq)
        except BaseException:
            if windowed:
                self._release()
            raise
        loop = self._loop
        fut: asyncio.Future[T] = loop.create_future()
        limit = timeout_s or self.settings.response_timeout_s
        deadline = loop.time() + limit
        idle = not self.pending and not self._out
        self.pending[seq] = (fut, read, deadline, limit, windowed)
        if idle:  # nothing in flight, nothing queued: the server is waiting, write now
            self._transport.write(data)  # type: ignore[union-attr]  # alive: it is there
        else:  # join this turn's batch (one system call for what the loop's tasks write in it)
            if not self._out:
                loop.call_soon(self._flush)
            self._out.append(data)
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)
        return fut

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_at(when, self._sweep)

    def _sweep(self) -> None:
        """The earliest deadline has come: expire what is due, arm for the next one."""
        self._timer = None
        now, first = asyncio.get_running_loop().time(), None
        for seq in list(self.pending):
            fut, _, deadline, limit, windowed = self.pending[seq]
            if deadline <= now:
                del self.pending[seq]
                if windowed:
                    self._release()
                if not fut.done():
                    fut.set_exception(ResponseTimeout(
                        f"{self.dialect.name}: no response to request {seq} within {limit:g} s"))
            elif first is None or deadline < first:
                first = deadline
        if first is not None and self.alive:
            self._arm(first)

    # -- the link's own traffic ---------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Bytes from the socket: every whole PDU in them, in order (the rest waits for more)."""
        if self._lost:
            return
        if self._rest:
            data = self._rest + data
        dialect, n, pos, size = self.dialect, self.dialect.header_len, 0, len(data)
        unpack, is_response, answered = dialect.unpack_header, dialect.is_response, self._answered
        self.last_rx = time.monotonic()
        while size - pos >= n:
            total, command_id, seq, status = unpack(data, pos)
            if not n <= total <= MAX_PDU:
                self._lose(f"link lost: {dialect.name}: a PDU length of {total} octets (a broken stream)")
                return
            if size - pos < total:
                break
            raw = data[pos:pos + total]
            pos += total
            frame = _new_frame(Frame, (command_id, seq, status, raw[n:], raw))  # Frame(...) without its __new__
            if self._login is not None:
                login, self._login = self._login, None
                if not login.done():
                    login.set_result(frame)
            elif is_response(command_id):
                answered(frame)
            elif not self._from_server(frame):
                return
        self._rest = data[pos:]

    def _answered(self, frame: Frame) -> None:
        entry = self.pending.pop(frame.seq, None)
        if entry is None:
            log.warning("%s: a response to no request (seq %d), ignored", self.dialect.name, frame.seq)
            return
        fut, read, _, _, windowed = entry
        if windowed:
            if self._waiters:
                self._release()
            else:
                self._used -= 1
        if fut.done():  # its caller was cancelled
            return
        if read is None:
            fut.set_result(frame)
            return
        try:
            fut.set_result(read(frame))
        except Exception as exc:  # a bug in read: the request learns it, the link goes on
            fut.set_exception(exc)

    def _from_server(self, frame: Frame) -> bool:
        """A request the server sent; False when it ended the session."""
        if self.dialect.is_keepalive(frame):
            self._write(self.dialect.answer(frame))
        elif self.dialect.is_logout(frame):
            self._write(self.dialect.answer(frame))
            self._lose("the server ended the session")
            return False
        else:
            self._inbox.put_nowait(frame)
        return True

    def _gone(self, exc: Exception | None) -> None:
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._lose(f"link lost: {exc}" if exc else "the server closed the connection")

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
                await self._start(self.dialect.keepalive, s.heartbeat_timeout_s, None, False)
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
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def _lose(self, why: str) -> None:
        """The link is dead: every request waiting for a response learns it was written."""
        if self._lost:
            return
        if self.alive and why != "closed" and not self._closing:
            log.warning("%s %s:%d: %s", self.dialect.name, self.settings.host, self.settings.port, why)
        self._lost, self.alive, self._why = True, False, why
        if self._login is not None and not self._login.done():
            self._login.set_exception(ConnectionError(why))
        lost, self.pending = self.pending, {}
        for fut, _, _, _, windowed in lost.values():
            if windowed:
                self._release()
            if not fut.done():
                fut.set_exception(LinkDown(why, sent=True))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inbox.put_nowait(None)
        if self._transport is not None:
            self._flush()  # an answer written just before (the server's logout) goes out first
            self._transport.close()
        if self._beat is not None and self._beat is not asyncio.current_task():
            self._beat.cancel()  # the answer loop ends on None

    # -- close --------------------------------------------------------------------------

    async def close(self, drain_s: float) -> None:
        """Wait for the window to drain, log out, close."""
        give_up = time.monotonic() + drain_s
        while self.alive and self.pending and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        self._closing = True  # a server that hangs up after our logout ends the link quietly
        if self.alive:
            with contextlib.suppress(LinkDown, OSError):
                await self._start(self.dialect.logout, min(self.settings.response_timeout_s, 5.0), None, False)
        self._lose("closed")
        answers = self._tasks[1] if self._tasks else None
        if answers is not None:  # what the server sent before is handled (not answered: it comes again)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(answers, 5.0)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._closed is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._closed), 5.0)
        self._transport = None

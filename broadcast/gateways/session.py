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

This module holds the pool (``SessionPool``); one connection is ``connection.Session``, an
``asyncio.Protocol`` built for the per-submit path: PDUs are cut from the bytes where they arrive
and a response completes its request at once, a window slot is given back as the response is
read, one timer per connection (armed for the earliest deadline) enforces every request's
timeout, and what a loop turn writes goes out in one system call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from broadcast.gateways.connection import (
    Dialect,
    Frame,
    LinkDown,
    LoginRefused,
    OnRequest,
    ResponseTimeout,
    Session,
    SessionSettings,
)

__all__ = ["Dialect", "Frame", "LinkDown", "LoginRefused", "OnRequest", "ResponseTimeout", "Session", "SessionPool",
           "SessionSettings"]

T = TypeVar("T")


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

    async def request(self, build: Callable[[int], bytes]) -> Frame:
        """One windowed request on some connection (connecting as needed); see the module docstring."""
        session = self._ready() or await self._session()
        return await session.request(build)

    def call(self, build: Callable[[int], bytes], read: Callable[[Frame], T]) -> Awaitable[T]:
        """``request`` answered with ``read(response)``, as ``Session.call`` says (with room on a
        live connection, the request is written at once and its future returned)."""
        session = self._ready()
        if session is not None:
            return session.call(build, read)
        return self._call_connecting(build, read)

    async def _call_connecting(self, build: Callable[[int], bytes], read: Callable[[Frame], T]) -> T:
        session = await self._session()
        return await session.call(build, read)

    def _ready(self) -> Session | None:
        """The connection whose turn it is, when it is up and has room (the common case, no await)."""
        sessions = self.sessions
        i = self._next % len(sessions)
        s = sessions[i]
        if s is not None and s.alive and s._used < s.settings.window:
            self._next = i + 1
            return s
        return None

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

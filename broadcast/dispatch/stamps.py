"""Start stamps: a request's rows are marked as started, committed, just before it leaves.

After a crash only stamped rows can have gone out (they are asked of the gateway or held in
doubt); unstamped ones are queued again. Requests starting at the same moment share one commit:
``started(rows)`` joins the round being written, or opens the next one.

Under a rate limit a round also takes its requests' send slots from the shared bucket, in the
same transaction (``SharedLimiter.reserve_in``): the limit then costs no transaction of its own,
and the slots are taken a moment before their requests leave, so they are rarely stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from broadcast.dispatch import ledger
from broadcast.dispatch.ledger import Claimed
from broadcast.dispatch.shared_rate import SharedLimiter

RunDb = Callable[..., Awaitable[Any]]
Limiters = Callable[[], tuple[SharedLimiter | None, SharedLimiter | None]]


def _no_limits() -> tuple[SharedLimiter | None, SharedLimiter | None]:
    return None, None


class StartStamps:
    def __init__(self, run_db: RunDb, engine: Engine, run_id: str, now: Callable[[], datetime],
                 limiters: Limiters = _no_limits) -> None:
        """``limiters()``: the limiters in force when a round is written, (per message, per
        request); each takes the round's rows, or its requests, with the stamps."""
        self._run_db, self._engine, self._run_id, self._now = run_db, engine, run_id, now
        self._limiters = limiters
        self._waiting: list[tuple[list[int], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def started(self, rows: Sequence[Claimed]) -> None:
        """Return once ``rows`` are stamped as started (committed): a crash after this may leave
        them in doubt, a crash before it leaves them to be queued again."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(([c.id for c in rows], fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_rounds())
        await fut

    async def _write_rounds(self) -> None:
        """Stamp everything waiting, together, one transaction per round, until nothing waits."""
        while self._waiting:
            group, self._waiting = self._waiting, []
            ids = [i for request, _ in group for i in request]
            per_message, per_request = self._limiters()
            wanted = ((per_message.reserve_in(len(ids)) if per_message else None),
                      (per_request.reserve_in(len(group)) if per_request else None))
            slots = [r for r in wanted if r is not None]
            try:
                await self._run_db(ledger.mark_started, self._engine, self._run_id, ids, self._now(), slots)
            except BaseException as exc:  # each waiting request raises it
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                for _, fut in self._waiting:
                    if not fut.done():
                        fut.set_exception(exc)
                self._waiting = []
                return
            for reservation in slots:
                reservation.keep()
            for _, fut in group:
                if not fut.done():
                    fut.set_result(None)

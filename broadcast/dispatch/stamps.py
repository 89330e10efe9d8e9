"""Start stamps: a request's rows are marked as started, committed, just before it leaves.

After a crash only stamped rows can have gone out (they are asked of the gateway or held in
doubt); unstamped ones are queued again. Requests starting at the same moment share one commit:
``started(rows)`` joins the round being written, or opens the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from broadcast.dispatch import ledger
from broadcast.dispatch.ledger import Claimed

RunDb = Callable[..., Awaitable[Any]]


class StartStamps:
    def __init__(self, run_db: RunDb, engine: Engine, run_id: str, now: Callable[[], datetime]) -> None:
        self._run_db, self._engine, self._run_id, self._now = run_db, engine, run_id, now
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
            try:
                await self._run_db(ledger.mark_started, self._engine, self._run_id,
                                   [i for ids, _ in group for i in ids], self._now())
            except BaseException as exc:  # each waiting request raises it
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                for _, fut in self._waiting:
                    if not fut.done():
                        fut.set_exception(exc)
                self._waiting = []
                return
            for _, fut in group:
                if not fut.done():
                    fut.set_result(None)

"""One receipt path: a receipt pulled by the dispatcher during a send and the same receipt pushed to
``receipts serve`` change a delivery by the same rules (``receipts.store``). They once disagreed: a
pulled final receipt for a delivery waiting to be retried was dropped, so it was sent again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest
import sqlalchemy as sa
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.db.dispatch_models import Delivery
from broadcast.db.types import table, utcnow
from broadcast.dispatch import ledger
from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.gateways.base import Capabilities, Gateway, Outcome, Receipt, SendItem, SendResult
from broadcast.messages.actions import approve_message
from broadcast.messages.store import create_message
from broadcast.receipts import store
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member
from broadcast.workspace import Workspace

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL

D = table(Delivery)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROADCAST_PULLING_")


class Pulling(Gateway):
    """Accepts every number but those in ``busy`` (503, retry later); hands out ``receipts`` when pulled."""

    capabilities: ClassVar[Capabilities] = Capabilities(name="pulling", max_batch=10, mixed_texts=True,
                                                         pull_receipts=True)
    settings_class = _Settings

    def __init__(self, busy: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(_Settings())
        self.busy = set(busy)
        self.receipts: list[Receipt] = []
        self.sent: list[SendItem] = []

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        self.sent += batch
        return [SendResult(i.delivery_id, Outcome.RETRYABLE, code="503") if i.phone in self.busy
                else SendResult(i.delivery_id, Outcome.ACCEPTED, provider_id=f"p{i.delivery_id}") for i in batch]

    async def fetch_receipts(self) -> list[Receipt]:
        out, self.receipts = self.receipts, []
        return out


@pytest.fixture
def ws_(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_RETRY_BASE_S", "600")  # a retry waits long after this pass
    monkeypatch.setenv("BROADCAST_RETRY_MAX_S", "600")
    monkeypatch.setenv("BROADCAST_MAX_ERROR_RATE", "1")
    from broadcast.config import load_settings

    add_group(ws, "一支部")
    for i in range(6):
        add_member(ws, f"人{i}", f"138000000{i:02d}", ["一支部"])
    return Workspace(load_settings(), ws.engine)


def _message(ws: Workspace) -> int:
    from broadcast.config import load_settings

    mid = create_message(Workspace(load_settings(operator="office"), ws.engine), text="通知", groups=["一支部"]).id
    approve_message(Workspace(load_settings(operator="leader"), ws.engine), mid)
    return mid


def _by_phone(ws: Workspace, mid: int) -> dict[str, tuple[int, str]]:
    with ws.engine.connect() as conn:
        return {p: (i, s) for i, p, s in conn.execute(
            sa.select(D.c.id, D.c.phone, D.c.status).where(D.c.message_id == mid))}


BUSY = {"+8613800000000", "+8613800000001", "+8613800000002"}


def _sent_pass(ws: Workspace) -> tuple[int, dict[str, tuple[int, str]]]:
    """Three deliveries accepted, three waiting to be retried."""
    mid = _message(ws)
    dispatcher = Dispatcher(ws, Pulling(BUSY))
    try:
        asyncio.run(dispatcher.run_pass(wait_for_retries=False))
    finally:
        dispatcher.close()
    rows = _by_phone(ws, mid)
    assert sorted(s for _, s in rows.values()) == ["accepted"] * 3 + ["retry_wait"] * 3
    return mid, rows


def _reports(rows: dict[str, tuple[int, str]]) -> list[Receipt]:
    """For each state, one delivered and one failed final receipt, and one interim ``accepted``."""
    phones = sorted(rows)
    kinds = ["delivered", "failed", "accepted"]
    return [Receipt(rows[p][0], None, kinds[n % 3], "X", utcnow()) for n, p in enumerate(phones)]  # type: ignore[arg-type]


def test_pulled_and_pushed_receipts_settle_alike(ws_: Workspace) -> None:
    ws = ws_
    mid, rows = _sent_pass(ws)
    receipts = _reports(rows)

    # pulled, by the dispatcher
    gw = Pulling()
    gw.receipts = list(receipts)
    dispatcher = Dispatcher(ws, gw)
    try:
        changed = asyncio.run(dispatcher.pull_receipts())
    finally:
        dispatcher.close()
    pulled = {p: s for p, (_, s) in _by_phone(ws, mid).items()}

    # pushed, as `receipts serve` records and applies them, on a second message in the same states
    mid2, rows2 = _sent_pass(ws)
    store.record(ws.engine, [("pulling", r, None) for r in _reports(rows2)], utcnow())
    store.apply_all(ws.engine, utcnow())
    pushed = {p: s for p, (_, s) in _by_phone(ws, mid2).items()}

    assert pulled == pushed
    # the case where the two paths once disagreed: final receipts for deliveries waiting to be retried
    busy = sorted(BUSY)
    assert [pulled[p] for p in busy] == ["delivered", "failed", "accepted"]
    assert changed == 5  # the accepted delivery's interim receipt changes nothing


def test_a_delivery_with_a_final_receipt_is_not_retried(ws_: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = ws_
    mid, rows = _sent_pass(ws)
    waiting = rows["+8613800000000"][0]
    gw = Pulling()
    gw.receipts = [Receipt(waiting, None, "delivered", "DELIVRD", utcnow())]
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:30")  # the retries are due
    from broadcast.config import load_settings

    later = Workspace(load_settings(), ws.engine)
    dispatcher = Dispatcher(later, gw)
    try:
        asyncio.run(dispatcher.pull_receipts())
        asyncio.run(dispatcher.run_pass())
    finally:
        dispatcher.close()
    assert waiting not in {i.delivery_id for i in gw.sent}  # settled as delivered: never sent again
    assert {i.phone for i in gw.sent} == BUSY - {"+8613800000000"}


def test_a_receipt_pulled_before_its_answer_is_recorded_is_applied_after(ws_: Workspace) -> None:
    """The simulator's receipts can come back while the send's answer waits to be committed: the
    receipt waits (pending) and is applied by the end of the pass, not dropped."""
    ws = ws_
    mid = _message(ws)

    class Early(Pulling):
        async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
            self.receipts += [Receipt(i.delivery_id, None, "delivered", "DELIVRD", utcnow()) for i in batch]
            return await super().send(batch)

    dispatcher = Dispatcher(ws, Early())
    try:
        asyncio.run(dispatcher.run_pass())
    finally:
        dispatcher.close()
    with ws.engine.connect() as conn:
        assert ledger.counts(conn, mid) == {"delivered": 6}
        assert store.pending_count(ws.engine) == 0

"""The engine's tests in-process: a gateway that answers from a script, 20 members of 一支部 with
the clock frozen and fast retries (the ``setup`` fixture), an approved message, one pass."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.dispatch import ledger
from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.gateways.base import Capabilities, Gateway, Outcome, Receipt, SendItem, SendResult
from broadcast.messages.actions import approve_message
from broadcast.messages.store import create_message
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member
from broadcast.workspace import Workspace


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROADCAST_SCRIPTED_")


class Scripted(Gateway):
    """Answers from a script: phone -> list of outcomes, one per attempt (default accepted)."""

    capabilities: ClassVar[Capabilities] = Capabilities(name="scripted", max_batch=10, mixed_texts=True,
                                                         can_query=True, pull_receipts=True)
    settings_class = _Settings

    def __init__(self, script: dict[str, list[SendResult | str]] | None = None, known: Sequence[int] = ()) -> None:
        super().__init__(_Settings())
        self.script = script or {}
        self.sent: list[SendItem] = []
        self.known = set(known)
        self.receipts: list[Receipt] = []

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        out = []
        for item in batch:
            self.sent.append(item)
            plan = self.script.get(item.phone, [])
            step = plan.pop(0) if plan else "ok"
            if step == "ok":
                out.append(SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=f"p{item.delivery_id}"))
            elif isinstance(step, SendResult):
                out.append(SendResult(item.delivery_id, step.outcome, code=step.code, maybe_sent=step.maybe_sent,
                                      retry_after_s=step.retry_after_s, pause=step.pause,
                                      recipient_fault=step.recipient_fault, blocked=step.blocked))
        return out

    async def query(self, items: Sequence[SendItem]) -> list[SendResult | None]:
        return [SendResult(i.delivery_id, Outcome.ACCEPTED, provider_id="q") if i.delivery_id in self.known else None
                for i in items]

    async def fetch_receipts(self) -> list[Receipt]:
        out, self.receipts = self.receipts, []
        return out


RETRY = SendResult(0, Outcome.RETRYABLE, code="503")
DOUBT = SendResult(0, Outcome.RETRYABLE, code="timeout", maybe_sent=True)
BAD = SendResult(0, Outcome.PERMANENT, code="INVALID_NUMBER")


@pytest.fixture
def setup(ws, monkeypatch):
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("BROADCAST_RETRY_MAX_S", "0.02")
    add_group(ws, "一支部")
    for i in range(20):
        add_member(ws, f"人{i}", f"138000000{i:02d}", ["一支部"])
    return ws


def as_operator(ws: Workspace, who: str) -> Workspace:
    from broadcast.config import load_settings

    return Workspace(load_settings(operator=who), ws.engine)


def approved_message(ws, text="明天下午三点开会，{name}同志请准时参加") -> int:
    ws = as_operator(ws, "office")
    mid = create_message(ws, text=text, groups=["一支部"]).id
    approve_message(as_operator(ws, "leader"), mid)
    return mid


def run(ws, gateway, **kw) -> object:
    return asyncio.run(Dispatcher(as_operator(ws, "cron"), gateway, **kw).run_pass())


def statuses(ws, mid) -> dict[str, int]:
    with ws.engine.connect() as conn:
        return ledger.counts(conn, mid)

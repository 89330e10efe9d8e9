"""The auto-pause in a real send loop: refused numbers never pause a message; a real storm does.

A message to 200 members whose first ten numbers the gateway refuses as invalid once paused after
~17 attempts ("10 of the last 17 attempts failed") with 183 members never tried."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.dispatch import ledger
from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.dispatch.policies import MIN_PAUSE_SAMPLES
from broadcast.gateways.base import Capabilities, Gateway, Outcome, SendItem, SendResult
from broadcast.messages.actions import approve_message
from broadcast.messages.store import create_message
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member
from broadcast.workspace import Workspace

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL

N = 200


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROADCAST_DEADFIRST_")


class Gw(Gateway):
    """One recipient per request (personalised texts); ``answer(phone) -> SendResult | None`` (None: accepted)."""

    capabilities: ClassVar[Capabilities] = Capabilities(name="deadfirst", max_batch=1)
    settings_class = _Settings

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        super().__init__(_Settings())
        self.answer, self.calls = answer, 0

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        self.calls += 1
        out = []
        for i in batch:
            r = self.answer(i.phone)
            out.append(SendResult(i.delivery_id, Outcome.ACCEPTED) if r is None else
                       SendResult(i.delivery_id, r.outcome, code=r.code, detail=r.detail, pause=r.pause,
                                  recipient_fault=r.recipient_fault))
        return out


@pytest.fixture
def mid(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> int:
    from broadcast.config import load_settings

    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_RETRY_BASE_S", "600")
    add_group(ws, "一支部")
    for i in range(N):
        add_member(ws, f"人{i}", f"1380000{i:04d}", ["一支部"])
    m = create_message(Workspace(load_settings(operator="office"), ws.engine), text="{name}同志：通知", groups=["一支部"]).id
    approve_message(Workspace(load_settings(operator="leader"), ws.engine), m)
    return m


def _run(ws: Workspace, gw: Gateway):  # type: ignore[no-untyped-def]
    from broadcast.config import load_settings

    d = Dispatcher(Workspace(load_settings(), ws.engine), gw)
    try:
        return asyncio.run(d.run_pass(wait_for_retries=False))
    finally:
        d.close()


def _counts(ws: Workspace, mid: int) -> dict[str, int]:
    with ws.engine.connect() as conn:
        return ledger.counts(conn, mid)


DEAD = {f"+861380000{i:04d}" for i in range(10)}
INVALID = SendResult(0, Outcome.PERMANENT, code="InvalidParameterValue.IncorrectPhoneNumber",
                     detail="incorrect phone number", recipient_fault=True)


def test_dead_numbers_first_fail_alone_and_the_rest_is_sent(ws: Workspace, mid: int) -> None:
    report = _run(ws, Gw(lambda phone: INVALID if phone in DEAD else None))
    assert not report.paused and report.completed == [mid]
    assert _counts(ws, mid) == {"failed": 10, "accepted": N - 10}


def test_every_number_refused_is_reported_by_reason_not_paused(ws: Workspace, mid: int) -> None:
    report = _run(ws, Gw(lambda phone: INVALID))
    assert not report.paused and _counts(ws, mid) == {"failed": N}


@pytest.mark.parametrize("failure", [
    SendResult(0, Outcome.RETRYABLE, code="500", detail="Internal Server Error"),
    SendResult(0, Outcome.PERMANENT, code="AuthFailure.SecretIdNotFound", detail="bad key"),
])
def test_a_real_storm_still_pauses_within_the_window(ws: Workspace, mid: int, failure: SendResult) -> None:
    gw = Gw(lambda phone: failure)
    report = _run(ws, gw)
    assert mid in report.paused and "attempts failed" in report.paused[mid]
    concurrency = 8
    assert gw.calls <= MIN_PAUSE_SAMPLES + 2 * concurrency  # not the whole audience
    assert _counts(ws, mid).get("queued", 0) >= N - gw.calls


def test_dead_numbers_do_not_hide_a_storm_that_follows(ws: Workspace, mid: int) -> None:
    down = SendResult(0, Outcome.RETRYABLE, code="503", detail="down")
    gw = Gw(lambda phone: INVALID if phone in DEAD else down)
    report = _run(ws, gw)
    assert mid in report.paused and "(last: 503 down)" in report.paused[mid]

"""Gateway faults through the real mock gateway and a real ``broadcast run``: timeouts, 429 with
Retry-After, 500s, malformed JSON, connection resets, a batch where some numbers fail. Every
answer is classified (delivery status + ``delivery_attempts`` outcome and code), nothing is lost
(every delivery ends final or in_doubt; retryable ones are eventually accepted), and requests that
may have been sent (reset after the write, read timeout, a malformed 2xx batch answer) are held
in doubt, never silently resent. Then the auto-pause: bad credentials (401, in-process through
httpx.MockTransport) and an error rate above BROADCAST_MAX_ERROR_RATE (the real mock answering
every request 500), resumed with ``broadcast message resume``; and dead numbers first (the mock
refusing them as the http contract says a number alone is refused), which never pause a message.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from broadcast.dispatch import service
from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.dispatch.policies import MIN_PAUSE_SAMPLES
from broadcast.gateways.base import make_client
from broadcast.gateways.http import HttpGateway, HttpSettings
from tests.helpers import sending as S

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> int:
    return S.prepared_message(monkeypatch, tmp_path, n)[0]


def _stats(mock: S.Mock) -> dict[str, int]:
    return httpx.get(f"http://127.0.0.1:{mock.port}/stats", timeout=5).json()


def _settled(mid: int, n: int) -> dict[int, S.Row]:
    rows = S.deliveries(mid)
    assert len(rows) == n
    left = Counter(r.status for r in rows.values() if r.status not in S.SETTLED)
    assert not left, f"left open: {left}"
    for r in rows.values():  # every gateway call was recorded as an attempt
        assert len(r.outcomes) == r.attempts, r
    return rows


# -- retryable faults: eventually accepted, each exactly once ----------------------------------------

@pytest.mark.slow  # starts processes
@pytest.mark.parametrize(
    ("args", "every", "outcome", "code"),
    [
        (("--fail-every", "4"), 4, "retryable", "500"),
        (("--status-429-every", "5", "--retry-after", "1"), 5, "retryable", "429"),
    ],
    ids=["500", "429-retry-after"],
)
def test_retryable_answers_are_retried_until_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], every: int,
                                                      outcome: str, code: str) -> None:
    n = 120
    mid = _setup(tmp_path, monkeypatch, n)
    with S.Mock(tmp_path / "received.jsonl", *args) as mock:
        S.run_until_done(mock.env(BROADCAST_MAX_ATTEMPTS="10"))
        requests = _stats(mock)["requests"]
        got = mock.by_id()
    rows = _settled(mid, n)
    assert all(r.status == "accepted" for r in rows.values()), S.status_counts(mid)
    assert all(got[i] == 1 for i in rows) and sum(got.values()) == n  # refused requests are not recorded
    faults = [(r, k) for r in rows.values() for k, o in enumerate(r.outcomes) if o == outcome]
    assert len(faults) == requests // every  # every refused request shows up as one attempt
    assert all(r.codes[k] == code for r, k in faults)
    assert all(r.outcomes[-1] == "accepted" for r in rows.values())
    if code == "429":  # Retry-After: 1 was honoured before the next attempt
        gaps = [(r.times[k + 1] - r.times[k]).total_seconds() for r, k in faults]
        assert min(gaps) >= 0.99, sorted(gaps)[:5]
    assert S.message_status(mid)[0] == "sent"


@pytest.mark.slow  # starts processes
def test_malformed_json_on_a_single_send_is_accepted_without_provider_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The http contract: a 2xx is acceptance, whatever its body; only the provider id is lost."""
    n = 60
    mid = _setup(tmp_path, monkeypatch, n)
    with S.Mock(tmp_path / "received.jsonl", "--malformed-every", "5") as mock:
        S.run_until_done(mock.env())
        requests = _stats(mock)["requests"]
        got = mock.by_id()
    rows = _settled(mid, n)
    assert requests == n and all(r.status == "accepted" for r in rows.values())
    assert all(got[i] == 1 for i in rows)
    assert sum(r.provider_id is None for r in rows.values()) == n // 5
    assert all(r.provider_id and r.provider_id.startswith("m") for r in rows.values() if r.provider_id is not None)


@pytest.mark.slow  # starts processes
def test_batch_with_failing_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch gateway (50 per request) refusing numbers ending in 7: those fail permanently with
    the provider's code, the rest are accepted once, nothing is retried."""
    n = 500
    mid = _setup(tmp_path, monkeypatch, n)
    with S.Mock(tmp_path / "received.jsonl", "--batch", "--reject-suffix", "7") as mock:
        results = S.run_until_done(mock.env(BROADCAST_HTTP_BATCH="50"))
        requests = _stats(mock)["requests"]
        got = mock.by_phone()
    rows = _settled(mid, n)
    assert requests == n // 50
    for r in rows.values():
        assert r.attempts == 1, r
        if r.phone.endswith("7"):
            assert (r.status, r.outcomes, r.error_code) == ("failed", ["permanent"], "INVALID_NUMBER"), r
            assert got[r.phone] == 0
        else:
            assert (r.status, r.outcomes) == ("accepted", ["accepted"]), r
            assert got[r.phone] == 1
    assert results[-1].json()["failed"] == n // 10
    assert S.message_status(mid)[0] == "sent"  # failed is final: the message is done


# -- maybe sent: held in doubt, never resent ---------------------------------------------------------

@pytest.mark.slow  # starts processes
@pytest.mark.parametrize(
    ("args", "env", "n", "codes"),
    [
        (("--reset-every", "5"), {}, 100, {"RemoteProtocolError", "ReadError"}),
        (("--delay-ms", "800"), {"BROADCAST_HTTP_TIMEOUT_S": "0.2"}, 6, {"ReadTimeout"}),
        (("--batch", "--malformed-every", "3"), {"BROADCAST_HTTP_BATCH": "50", "BROADCAST_MAX_ERROR_RATE": "1"}, 400,
         {"malformed_response"}),
    ],
    ids=["reset-after-write", "read-timeout", "malformed-2xx-batch"],
)
def test_maybe_sent_is_held_in_doubt_never_resent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], env: dict[str, str], n: int,
                                                  codes: set[str]) -> None:
    mid = _setup(tmp_path, monkeypatch, n)
    with S.Mock(tmp_path / "received.jsonl", *args) as mock:
        e = mock.env(**env)
        first = S.broadcast(e, "run", "--json")
        again = S.broadcast(e, "run", "--json")  # a second pass does not touch them either
        requests = _stats(mock)["requests"]
        got = mock.by_id()
        show = S.broadcast(e, "message", "show", str(mid), "--json")
    rows = _settled(mid, n)
    doubt = {i for i, r in rows.items() if r.status == "in_doubt"}
    assert first.code == 3 and again.code == 3, (first, again)  # attention: deliveries in doubt
    assert first.json()["in_doubt_new"] == len(doubt) and again.json()["accepted"] == 0
    assert requests == (n if "--batch" not in args else n // 50)  # one request per delivery/batch: no resend
    per_request = 50 if "--batch" in args else 1
    expected = n if "--delay-ms" in args else (requests // int(args[-1])) * per_request
    assert len(doubt) == expected
    for i, r in rows.items():
        assert r.attempts == 1 and got[i] == 1, (r, got[i])  # the gateway has every one of them, once
        if i in doubt:
            assert r.outcomes == ["in_doubt"] and r.codes[0] in codes, r
        else:
            assert r.status == "accepted", r
    data = show.json()
    assert data["deliveries"]["in_doubt"] == len(doubt)
    assert {d["delivery_id"] for d in data["in_doubt"]} <= doubt
    assert S.message_status(mid)[0] == "sending"  # not reported finished while some are in doubt


@pytest.mark.slow  # starts processes
def test_reset_after_write_with_resend_policy_is_at_least_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BROADCAST_IN_DOUBT=resend: a maybe-sent request is retried; everyone gets it, the reset
    ones (and only they) twice."""
    n = 100
    mid = _setup(tmp_path, monkeypatch, n)
    with S.Mock(tmp_path / "received.jsonl", "--reset-every", "5") as mock:
        S.run_until_done(mock.env(BROADCAST_IN_DOUBT="resend", BROADCAST_MAX_ATTEMPTS="10"))
        got = mock.by_id()
    rows = _settled(mid, n)
    assert all(r.status == "accepted" for r in rows.values())
    for i, r in rows.items():
        resets = r.outcomes.count("retryable")
        assert got[i] == resets + 1 >= 1, (r, got[i])


# -- auto-pause ------------------------------------------------------------------------------------

@pytest.mark.slow  # starts processes
def test_error_rate_pauses_then_resume_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real mock answers every request 500: after MIN_PAUSE_SAMPLES answers the error rate is
    over BROADCAST_MAX_ERROR_RATE, the message pauses with the reason, the run exits 3 and the
    audience is not burnt through. Resumed against a healthy gateway, it finishes, each member once."""
    n = 300
    mid = _setup(tmp_path, monkeypatch, n)
    with S.Mock(tmp_path / "bad.jsonl", "--fail-every", "1") as bad:
        r = S.broadcast(bad.env(), "run", "--json")
        assert r.code == 3, r
        assert r.json()["paused"] and r.json()["paused"][0]["id"] == mid
        again = S.broadcast(bad.env(), "run", "--json")  # a paused message is not sent
        assert again.code == 0 and again.json()["accepted"] == again.json()["failed"] == 0, again
        tried = _stats(bad)["requests"]
    status, reason = S.message_status(mid)
    assert status == "paused" and reason and "attempts failed" in reason and "500" in reason, reason
    counts = S.status_counts(mid)
    concurrency = 8
    assert tried <= MIN_PAUSE_SAMPLES + 2 * concurrency, (tried, counts)  # not the whole audience
    assert counts.get("queued", 0) >= n - tried, counts  # the rest was given back
    assert set(counts) <= {"retry_wait", "queued"}, counts  # a 500 is retried, never a failure of its own

    with S.Mock(tmp_path / "good.jsonl") as good:
        res = S.broadcast(good.env(), "message", "resume", str(mid))
        assert res.code == 0, res
        done = S.broadcast(good.env(), "run", "--json")
        assert done.code == 0, done
        got = good.by_id()
    rows = _settled(mid, n)
    assert all(r.status == "accepted" and got[i] == 1 for i, r in rows.items())
    assert sum(got.values()) == n
    assert S.message_status(mid)[0] == "sent"


@pytest.mark.slow  # starts processes
def test_dead_numbers_first_never_pause_the_send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale branch list: the first ten of 200 numbers are refused (the real mock, --reject-suffix
    with each whole number). ``broadcast run`` sends to the other 190, fails the ten by reason,
    exits 0 and the message is sent: refused numbers never pause it."""
    n = 200
    mid, phones = S.prepared_message(monkeypatch, tmp_path, n)
    dead = phones[:10]
    with S.Mock(tmp_path / "received.jsonl", *[a for p in dead for a in ("--reject-suffix", p)]) as mock:
        r = S.broadcast(mock.env(), "run", "--json")
        got = mock.by_phone()
    assert r.code == 0, r
    assert not r.json()["paused"] and r.json()["failed"] == 10 and r.json()["accepted"] == n - 10, r
    rows = _settled(mid, n)
    for row in rows.values():
        if row.phone in dead:
            assert (row.status, row.error_code, got[row.phone]) == ("failed", "400:INVALID_NUMBER", 0), row
        else:
            assert row.status == "accepted" and got[row.phone] == 1, row
    assert S.message_status(mid)[0] == "sent"


def test_bad_credentials_pause_at_once_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """401 from the provider marks the answer ``pause``: the message pauses on the first one, in
    process with httpx.MockTransport; after ``resume`` a healthy gateway finishes it."""
    n = 50
    mid = _setup(tmp_path, monkeypatch, n)
    ws = S.open_workspace(monkeypatch, gateway="http")
    calls: Counter[str] = Counter()

    def handler(status: int) -> Callable[[httpx.Request], httpx.Response]:
        def answer(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            calls[str(status)] += 1
            if status == 401:
                return httpx.Response(401, json={"error": "invalid API key", "code": "AUTH"})
            return httpx.Response(200, json={"id": f"p{body['id']}"})
        return answer

    async def one_pass(status: int) -> object:
        async with make_client(5, 8, transport=httpx.MockTransport(handler(status))) as client:
            gateway = HttpGateway(HttpSettings(url="https://sms.example.com/send"), client)
            return await Dispatcher(ws, gateway).run_pass()

    try:
        report = asyncio.run(one_pass(401))
        assert report.paused and mid in report.paused and report.needs_attention  # the CLI exits 3
        assert "refused the account" in report.paused[mid] and "401" in report.paused[mid]
        status, reason = S.message_status(mid)
        assert status == "paused" and "401" in (reason or "")
        assert calls["401"] <= 8  # at most the requests already in flight
        counts = S.status_counts(mid)
        # a refused account sent nothing: the refused requests wait, none failed
        assert counts.get("retry_wait", 0) == calls["401"] and counts.get("queued", 0) == n - calls["401"], counts

        assert service.resume(ws, mid) == "sending"
        report = asyncio.run(one_pass(200))
        assert report.completed == [mid] and report.outcomes.accepted == n
        assert calls["200"] == n
        assert S.message_status(mid)[0] == "sent"
    finally:
        ws.close()

"""The checks of the gateway contract kit. Each takes a ``GatewayCase`` and raises ``AssertionError``
saying what the gateway got wrong; ``None`` when it passed, or a sentence when it does not apply
(``skipped: …``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

import httpx
from pydantic_settings import BaseSettings

from broadcast.gateways.base import Capabilities, Gateway, Outcome, Receipt, SendItem, SendResult, settings_timeout
from broadcast.gateways.push import STATUSES
from broadcast.testing.case import (
    GatewayCase,
    Hung,
    captured,
    closed,
    environment,
    run,
    sample_items,
    secret_values,
    silent_endpoint,
)

__all__ = [
    "CHECKS",
    "TIMEOUT_S",
    "check_batch_limits",
    "check_declarations",
    "check_failures_classified",
    "check_gateway",
    "check_no_secret_leaks",
    "check_receipts_idempotent",
    "check_results_in_order",
    "check_split_not_dropped",
    "check_timeouts",
]

#: The timeout the hanging gateway is configured with; it must answer within ``2 × TIMEOUT_S + SLACK_S``.
TIMEOUT_S = 0.4
SLACK_S = 1.5
Check = Callable[[GatewayCase], str | None]


def _items(case: GatewayCase, n: int, *, same_text: bool = False) -> list[SendItem]:
    """Sample items addressed as the case's gateway expects (``case.address``, else phones)."""
    return sample_items(n, same_text=same_text, address=case.address)


def _fail(case: GatewayCase, what: str) -> AssertionError:
    return AssertionError(f"gateway {case.id!r}: {what}")


async def _send(case: GatewayCase, gateway: Gateway, items: Sequence[SendItem]) -> list[SendResult]:
    """``send(items)``: a raised exception is a contract failure; one result per item, in order."""
    try:
        results = await gateway.send(list(items))
    except Exception as exc:
        raise _fail(case, f"send() raised {type(exc).__name__}: {exc} — transport and provider failures must be "
                          "classified in a SendResult, never raised") from exc
    if not isinstance(results, list) or not all(isinstance(r, SendResult) for r in results):
        raise _fail(case, f"send() must return a list of SendResult, got {type(results).__name__}")
    got, want = [r.delivery_id for r in results], [i.delivery_id for i in items]
    if got != want:
        lost = sorted(set(want) - set(got))
        raise _fail(case, f"send() of {len(items)} items returned {len(results)} results; one result per item, in the "
                          f"items' order, is required (missing: {lost[:5]}{'…' if len(lost) > 5 else ''})")
    return results


def _send_closed(case: GatewayCase, gateway: Gateway, items: Sequence[SendItem]) -> list[SendResult]:
    async def go() -> list[SendResult]:
        try:
            return await _send(case, gateway, items)
        finally:
            await closed(gateway)

    with environment(case.env):
        return run(go)


def _all_accepted(case: GatewayCase, results: Sequence[SendResult]) -> None:
    bad = [r for r in results if r.outcome is not Outcome.ACCEPTED or r.maybe_sent or r.pause]
    if bad:
        raise _fail(case, f"the healthy provider accepts everything, but {len(bad)} results are not plainly accepted: {bad[0]}")


# -- (a) ------------------------------------------------------------------------------------------


def check_declarations(case: GatewayCase) -> str | None:
    """Capabilities and settings declared; registered under its name (entry point ``broadcast.gateways``)."""
    from broadcast.gateways import registry

    gateway = case.healthy()
    cls = type(gateway)
    caps = getattr(cls, "capabilities", None)
    if not isinstance(caps, Capabilities) or not isinstance(gateway.capabilities, Capabilities):
        raise _fail(case, "the class and the instance must declare `capabilities` (a Capabilities)")
    if caps.name != case.name:
        raise _fail(case, f"capabilities.name is {caps.name!r}, not its entry-point name {case.name!r}")
    inst = gateway.capabilities
    if inst.max_batch < 1 or not inst.description:
        raise _fail(case, "capabilities need max_batch >= 1 and a description")
    for limit in ("max_per_second", "max_requests_per_second", "per_number_daily_cap"):
        value = getattr(inst, limit)
        if value is not None and value <= 0:
            raise _fail(case, f"capabilities.{limit} must be None or > 0, not {value}")
    settings_class = getattr(cls, "settings_class", None)
    if not (isinstance(settings_class, type) and issubclass(settings_class, BaseSettings)):
        raise _fail(case, "`settings_class` must be a pydantic-settings BaseSettings subclass")
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    if not prefix.startswith("BROADCAST_"):
        raise _fail(case, f"settings_class's env_prefix must start with BROADCAST_ (got {prefix!r})")
    if not isinstance(gateway.settings, settings_class):
        raise _fail(case, "the gateway's settings must be an instance of its settings_class")
    problems = gateway.check()
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        raise _fail(case, "check() must return a list of strings")
    run(lambda: closed(gateway))
    try:
        found = registry.load(case.name)
    except Exception as exc:
        raise _fail(case, f"not found by the registry ({exc}): declare it in the entry-point group {registry.GROUP}") from None
    if found is not cls:
        raise _fail(case, f"the registry loads {found.__module__}.{found.__qualname__} for {case.name!r}, not {cls.__qualname__}")
    return None


# -- (b), (c), (d) --------------------------------------------------------------------------------


def check_results_in_order(case: GatewayCase) -> str | None:
    """One accepted result per item, in order, each with a provider id."""
    gateway = case.healthy()
    results = _send_closed(case, gateway, _items(case, min(gateway.capabilities.max_batch, 30)))
    _all_accepted(case, results)
    if _has_receipts(gateway) and not all(r.provider_id for r in results):
        raise _fail(case, "an accepted result needs the provider's id (provider_id) to match its receipts")
    return None


def _has_receipts(gateway: Gateway) -> bool:
    """Does anything ever match a provider id (push or pull receipts, queries)? A group robot's
    answer carries no id, and nothing would ever look one up."""
    cls = type(gateway)
    return bool(cls.receipt_formats()) or cls.pulls_receipts() or gateway.capabilities.can_query


def check_split_not_dropped(case: GatewayCase) -> str | None:
    """Given more than ``max_batch`` items, the gateway splits them itself and drops none."""
    gateway = case.healthy()
    results = _send_closed(case, gateway, _items(case, gateway.capabilities.max_batch * 2 + 1))
    _all_accepted(case, results)
    return None


def _classified(case: GatewayCase, r: SendResult) -> None:
    if not isinstance(r.outcome, Outcome):
        raise _fail(case, f"outcome must be an Outcome, not {r.outcome!r}")
    if r.outcome is not Outcome.ACCEPTED and not r.code:
        raise _fail(case, f"a failed result needs a code saying why: {r}")
    if r.maybe_sent and r.outcome is not Outcome.RETRYABLE:
        raise _fail(case, f"maybe_sent (in doubt) is only meaningful with Outcome.RETRYABLE: {r}")
    if r.retry_after_s is not None and r.retry_after_s < 0:
        raise _fail(case, f"retry_after_s must be None or >= 0: {r}")


def check_failures_classified(case: GatewayCase) -> str | None:
    """A failing provider or transport: every item classified, none accepted, nothing raised."""
    if case.failing is None:
        return "skipped: the case has no failing() (a gateway that cannot fail)"
    gateway = case.failing()
    results = _send_closed(case, gateway, _items(case, min(gateway.capabilities.max_batch, 30)))
    for r in results:
        _classified(case, r)
    accepted = [r for r in results if r.outcome is Outcome.ACCEPTED]
    if accepted:
        raise _fail(case, f"failing() gave {len(accepted)} accepted results: its provider must be failing")
    return None


# -- (e) no secret in any output ----------------------------------------------------------------------


async def _exercise(case: GatewayCase, texts: list[tuple[str, str]]) -> None:
    """Everything a gateway says: its reprs, check(), ping(), results of sends that succeed, fail and
    time out, query() and fetch_receipts()."""
    makers: list[tuple[str, Callable[[], Gateway]]] = [("healthy", case.healthy)]
    if case.failing is not None:
        makers.append(("failing", case.failing))
    for label, make in makers:
        gateway = make()
        texts += [(f"{label} repr(gateway)", repr(gateway)), (f"{label} str(gateway)", str(gateway)),
                  (f"{label} repr(settings)", repr(gateway.settings)), (f"{label} str(settings)", str(gateway.settings)),
                  (f"{label} check()", "\n".join(gateway.check()))]
        items = _items(case, 3)
        try:
            texts.append((f"{label} ping()", str(await gateway.ping())))
            texts += [(f"{label} result", repr(r)) for r in await _send(case, gateway, items)]
            texts += [(f"{label} query()", repr(a)) for a in await gateway.query(items)]
            texts += [(f"{label} fetch_receipts()", repr(r)) for r in await gateway.fetch_receipts()]
        except AssertionError:
            raise
        except Exception as exc:  # query/fetch may raise a provider error: its message is output too
            texts.append((f"{label} {type(exc).__name__}", str(exc)))
        finally:
            await closed(gateway)
    if case.hanging is not None:
        with _silent(case) as url:
            gateway = case.hanging(url, TIMEOUT_S)
            try:
                texts += [("timed-out result", repr(r)) for r in await _send(case, gateway, _items(case, 1))]
            finally:
                await closed(gateway)


def check_no_secret_leaks(case: GatewayCase) -> str | None:
    """No secret setting value in any repr, check()/ping() text, result, printed line or log record."""
    probe = case.healthy()
    run(lambda: closed(probe))
    secrets = secret_values(probe, case.secrets)
    if not secrets:
        return "skipped: no secret settings (no SecretStr field) and no case.secrets"
    formats = type(probe).receipt_formats()
    texts: list[tuple[str, str]] = []
    with environment(case.env), captured() as out:
        run(lambda: _exercise(case, texts))
        for name, incoming in case.push_samples.items():
            if name in formats:
                texts += [(f"push {name}", repr(r)) for r in formats[name].parse(incoming)]
    texts += out.texts()
    leaks = [where for where, text in texts for s in secrets if s in text]
    if leaks:
        raise _fail(case, f"a secret setting value appears in: {', '.join(dict.fromkeys(leaks))}")
    return None


# -- (f) timeouts ---------------------------------------------------------------------------------------


def _silent(case: GatewayCase) -> contextlib.AbstractContextManager[str]:
    """The case's silent server (a login-first gateway's), else the kit's silent HTTP endpoint."""
    return case.silent_server() if case.silent_server is not None else silent_endpoint()


def check_timeouts(case: GatewayCase) -> str | None:
    """A provider that never answers: a retryable, in-doubt result within the configured timeout, no hang."""
    if case.hanging is None:
        return "skipped: the case has no hanging() (a gateway that makes no network request)"
    budget = 2 * TIMEOUT_S + SLACK_S
    with _silent(case) as url:
        gateway = case.hanging(url, TIMEOUT_S)
        if settings_timeout(gateway.settings) != TIMEOUT_S:
            raise _fail(case, f"hanging(url, {TIMEOUT_S}) must configure timeout_s={TIMEOUT_S} "
                              f"(got {settings_timeout(gateway.settings)})")
        started = time.monotonic()

        async def go() -> list[SendResult]:
            try:
                return await _send(case, gateway, _items(case, 1))
            finally:
                await closed(gateway)

        with environment(case.env):
            try:
                results = run(go, timeout_s=budget)
            except Hung as exc:
                raise _fail(case, f"{exc} — with timeout_s={TIMEOUT_S} against a provider that never answers") from None
        elapsed = time.monotonic() - started
    (r,) = results
    _classified(case, r)
    if r.outcome is not Outcome.RETRYABLE or not r.maybe_sent:
        raise _fail(case, f"a request written but never answered must be RETRYABLE with maybe_sent=True (in doubt), got {r}")
    if elapsed < TIMEOUT_S * 0.9:
        raise _fail(case, f"gave up after {elapsed:.2f} s, before its timeout of {TIMEOUT_S} s")
    return None


# -- (g) receipts ---------------------------------------------------------------------------------------


def _valid_receipt(case: GatewayCase, where: str, r: object) -> None:
    if not isinstance(r, Receipt):
        raise _fail(case, f"{where} must return Receipt objects, got {type(r).__name__}")
    if r.delivery_id is None and r.provider_id is None:
        raise _fail(case, f"{where}: a receipt needs a delivery_id or a provider_id: {r}")
    if r.status not in STATUSES:
        raise _fail(case, f"{where}: status must be one of {sorted(STATUSES)}: {r}")
    if r.at.utcoffset() != timedelta(0):
        raise _fail(case, f"{where}: `at` must be timezone-aware UTC: {r}")


async def _empty_state(case: GatewayCase) -> None:
    gateway = case.healthy()
    try:
        if await _send(case, gateway, []) != []:
            raise _fail(case, "send([]) must return []")
        items = _items(case, 3)
        answers = await gateway.query(items)
        if not isinstance(answers, list) or len(answers) != len(items):
            raise _fail(case, "query(items) must return a list with one answer (or None) per item")
        for a, i in zip(answers, items):
            if a is not None and (not isinstance(a, SendResult) or a.delivery_id != i.delivery_id):
                raise _fail(case, f"query() answers must be None or the item's SendResult, got {a!r} for {i}")
        for _ in range(2):
            receipts = await gateway.fetch_receipts()
            if not isinstance(receipts, list):
                raise _fail(case, "fetch_receipts() must return a list")
            for r in receipts:
                _valid_receipt(case, "fetch_receipts()", r)
    finally:
        await closed(gateway)


def check_receipts_idempotent(case: GatewayCase) -> str | None:
    """The same push parsed twice gives the same receipts; query/fetch_receipts of nothing are lists."""
    probe = case.healthy()
    run(lambda: closed(probe))
    formats = type(probe).receipt_formats()
    unknown = sorted(set(case.push_samples) - set(formats))
    if unknown:
        raise _fail(case, f"push_samples for formats the gateway does not declare: {unknown} (declared: {sorted(formats)})")
    missing = sorted(set(formats) - set(case.push_samples))
    if missing:
        raise _fail(case, f"receipt_formats() declares {missing} but the case has no push_samples for them")
    with environment(case.env):
        for name, fmt in formats.items():
            first, second = fmt.parse(case.push_samples[name]), fmt.parse(case.push_samples[name])
            if not first:
                raise _fail(case, f"the push sample of {name!r} parsed to no receipt: give one that carries a report")
            for r in first:
                _valid_receipt(case, f"push format {name!r}", r)
            if first != second:
                raise _fail(case, f"push format {name!r}: the same callback parsed twice gave different receipts "
                                  f"({first} then {second}); a provider retries callbacks, so parsing must be idempotent")
        run(lambda: _empty_state(case))
    return None


# -- (h) batch limits ---------------------------------------------------------------------------------


def _count_requests(case: GatewayCase, gateway: Gateway, counter: Callable[[httpx.Request], int]) -> list[int]:
    client = getattr(gateway, "_client", None)
    if not isinstance(client, httpx.AsyncClient):
        raise _fail(case, "case.recipients is set, but healthy() gave the gateway no httpx.AsyncClient to count requests on: "
                          "pass one to its constructor (make_client(transport=httpx.MockTransport(...)))")
    counts: list[int] = []

    async def hook(request: httpx.Request) -> None:
        counts.append(counter(request))

    client.event_hooks["request"].append(hook)
    return counts


def check_batch_limits(case: GatewayCase) -> str | None:
    """No request to the provider carries more than ``capabilities.max_batch`` recipients, and every
    item reaches it."""
    if case.recipients is None:
        return "skipped: the case has no recipients() (a gateway that makes no HTTP request)"
    for same_text in (True, False):
        gateway = case.healthy()
        limit = gateway.capabilities.max_batch
        counts = _count_requests(case, gateway, case.recipients)
        items = _items(case, limit * 2 + 1, same_text=same_text)
        _all_accepted(case, _send_closed(case, gateway, items))
        kind = "one text" if same_text else "a text each"
        over = [n for n in counts if n > limit]
        if over:
            raise _fail(case, f"a request carried {max(over)} recipients, over its declared max_batch of {limit} ({kind})")
        if sum(counts) < len(items):
            raise _fail(case, f"{len(items)} items ({kind}) but the provider's requests carried {sum(counts)} recipients")
    return None


#: Every check, in the order ``check_gateway`` runs them.
CHECKS: tuple[Check, ...] = (
    check_declarations,
    check_results_in_order,
    check_split_not_dropped,
    check_failures_classified,
    check_no_secret_leaks,
    check_timeouts,
    check_receipts_idempotent,
    check_batch_limits,
)


def check_gateway(case: GatewayCase) -> list[str]:
    """Run every check; raise one ``AssertionError`` listing each that failed. Returns the notes of
    the checks that did not apply (``"check_timeouts: skipped: …"``)."""
    failures: list[str] = []
    notes: list[str] = []
    for check in CHECKS:
        try:
            note = check(case)
        except AssertionError as exc:
            failures.append(f"{check.__name__}: {exc}")
            continue
        if note:
            notes.append(f"{check.__name__}: {note}")
    if failures:
        raise AssertionError(f"gateway {case.id!r} fails the contract:\n  " + "\n  ".join(failures))
    return notes

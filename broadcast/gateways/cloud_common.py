"""Vocabulary shared by the cloud SMS gateways (``aliyun``, ``tencent``, ``twilio``).

* ``Verdict`` and ``verdict_result``: how a provider error code is classified, as data;
* ``send_splitting``: when a provider rejects a whole multi-number request because of one number,
  bisect the batch so that the good numbers still go out and only the bad one fails (the rejected
  request sent nothing, so resending its halves cannot duplicate a message);
* correlation tags (our delivery ids in ``OutId`` / ``SessionContext``), phone keys for matching
  receipts, and China Standard Time parsing for the providers' local timestamps.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from broadcast.gateways.base import Outcome, SendItem, SendResult

#: China Standard Time (no DST), the zone of Aliyun's and Tencent's local timestamps and dates.
CST = timezone(timedelta(hours=8), "CST")


@dataclass(frozen=True)
class Verdict:
    """How one provider error code is handled.

    ``split``: the code names one bad number (or too many numbers) inside a multi-number request:
    the batch is bisected and resent; for a single number it is ``outcome``.

    ``recipient``: the code concerns one number only (invalid, blacklisted, over its own frequency
    limit): ``SendResult.recipient_fault``, never counted toward the message's auto-pause. Every
    other code says something about the account, the request or the provider, and counts.

    ``blocked`` (with ``recipient``): the provider refused the number as on its or the carrier's
    blacklist (``SendResult.blocked``).
    """

    outcome: Outcome
    pause: bool = False
    retry_after_s: float | None = None
    split: bool = False
    maybe_sent: bool = False
    recipient: bool = False
    blocked: bool = False


RETRY = Verdict(Outcome.RETRYABLE)
PERMANENT = Verdict(Outcome.PERMANENT)
PAUSE = Verdict(Outcome.PERMANENT, pause=True)
#: One bad number: bisect a multi-number request; that number fails alone, as a recipient fault.
PER_NUMBER = Verdict(Outcome.PERMANENT, split=True, recipient=True)
#: One number on the provider's (or the carrier's) blacklist: as ``PER_NUMBER``, and ``blocked``.
BLOCKED = Verdict(Outcome.PERMANENT, split=True, recipient=True, blocked=True)
#: Too many numbers, or kinds that cannot share a request: bisect; a single number still refused
#: so says something about the request or the account (it counts).
SPLIT = Verdict(Outcome.PERMANENT, split=True)


def verdict_result(delivery_id: int, verdict: Verdict, code: str, detail: str | None) -> SendResult:
    return SendResult(
        delivery_id,
        verdict.outcome,
        code=code[:64] or "error",
        detail=detail,
        retry_after_s=verdict.retry_after_s,
        maybe_sent=verdict.maybe_sent and verdict.outcome is Outcome.RETRYABLE,
        pause=verdict.pause,
        recipient_fault=verdict.recipient,
        blocked=verdict.blocked,
    )


@dataclass(frozen=True)
class Split:
    """Returned by a request function instead of results: the provider rejected the whole request
    because of one number (or the count): nothing was sent."""

    code: str
    detail: str | None
    verdict: Verdict


RequestFn = Callable[[Sequence[SendItem]], Awaitable["list[SendResult] | Split"]]


async def send_splitting(items: Sequence[SendItem], request: RequestFn) -> list[SendResult]:
    """``request(items)``; on ``Split``, bisect and retry each half (a single item gets the verdict).

    A batch of n with one bad number costs about 2·log2(n) extra requests; every good number goes out once.
    """
    answer = await request(items)
    if not isinstance(answer, Split):
        return answer
    if len(items) == 1:
        v = answer.verdict
        single = Verdict(v.outcome, v.pause, v.retry_after_s, recipient=v.recipient, blocked=v.blocked)
        return [verdict_result(items[0].delivery_id, single, answer.code, answer.detail)]
    mid = len(items) // 2
    return await send_splitting(items[:mid], request) + await send_splitting(items[mid:], request)


# ---------------------------------------------------------------------------------------------
# Correlation


def correlation_tag(items: Sequence[SendItem]) -> str:
    """Our ids for a provider's one-per-request correlation field: the delivery id of a
    single-recipient request, ``"<lowest>-<highest>"`` for a batch (the deliveries of one request
    belong to one message and are frozen together, so the range is tight)."""
    ids = [i.delivery_id for i in items]
    return str(ids[0]) if len(ids) == 1 else f"{min(ids)}-{max(ids)}"


def tag_delivery_id(tag: object) -> int | None:
    """The delivery id a tag names exactly (single-recipient request), else None."""
    text = str(tag).strip() if tag is not None else ""
    return int(text) if text.isdigit() else None


def tag_covers(tag: object, delivery_id: int) -> bool | None:
    """True: the tag names this delivery; None: it is a range containing it (needs another check);
    False: not this delivery."""
    text = str(tag).strip() if tag is not None else ""
    if text.isdigit():
        return int(text) == delivery_id
    low, sep, high = text.partition("-")
    if sep and low.isdigit() and high.isdigit() and int(low) <= delivery_id <= int(high):
        return None
    return False


def phone_key(phone: object) -> str:
    """A phone number as providers echo it, for matching: mainland numbers as 11 national digits
    (``+8613800000000``, ``008613800000000``, ``8613800000000`` → ``13800000000``), others as digits
    without ``+``/``00``."""
    digits = "".join(ch for ch in str(phone) if ch.isdigit())
    text = str(phone).strip()
    if text.startswith("00"):
        digits = digits[2:]
    for prefix in ("86",):
        rest = digits[len(prefix):]
        if digits.startswith(prefix) and len(rest) == 11 and rest.startswith("1"):
            return rest
    return digits


def parse_cst(value: object) -> datetime | None:
    """``"2017-02-02 22:23:24"`` (China Standard Time) → aware UTC datetime; None if unparsable."""
    if not isinstance(value, str) or not value.strip():
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y%m%d%H%M%S"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=CST).astimezone(UTC)
        except ValueError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Answers


def json_body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def snippet(response: httpx.Response, limit: int = 200) -> str:
    text = response.content[: limit * 4].decode("utf-8", "replace")
    return text[:limit] + ("…" if len(text) > limit else "")


def malformed(items: Sequence[SendItem], response: httpx.Response, why: str) -> list[SendResult]:
    """A 2xx answer we cannot read: the provider may have sent: retryable, in doubt."""
    detail = f"{response.status_code} {why}: {snippet(response)}"
    return [
        SendResult(i.delivery_id, Outcome.RETRYABLE, code="malformed_response", detail=detail, maybe_sent=True)
        for i in items
    ]


def load_json_items(body: bytes | str | Any) -> list[dict[str, Any]]:
    """A push body (bytes/str JSON, or already decoded) → its list of objects (a single object is
    accepted as a list of one). Raises ValueError when it is not JSON or holds no objects."""
    data = body
    if isinstance(body, (bytes, bytearray, str)):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("expected a JSON array of objects")
    return [row for row in data if isinstance(row, dict)]

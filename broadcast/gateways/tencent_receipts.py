"""Tencent Cloud's receipts: the delivery-report callback (push) and, only with
``BROADCAST_TENCENT_PULL_RECEIPTS=true`` (Tencent enables pulling on request), the pull: the
``PullSmsSendStatus`` queue first, then ``PullSmsSendStatusByPhoneNumber`` for the deliveries the
queue did not cover, matched by ``SerialNo`` or ``SessionContext``. Only final reports exist there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broadcast.gateways.base import Receipt
from broadcast.gateways.cloud_common import load_json_items, parse_cst, tag_covers, tag_delivery_id
from broadcast.gateways.push import Candidate, Format, Pull, json_body_format

if TYPE_CHECKING:
    from broadcast.gateways.tencent import TencentGateway

__all__ = ["formats", "parse_callback", "parse_pull_status", "pull_tencent"]

PULL_OFF = ("skipped: BROADCAST_TENCENT_PULL_RECEIPTS is off (Tencent enables pulling on request); "
            "receipts come by the push callback")


def formats() -> dict[str, Format]:
    """Tencent Cloud's delivery-report push (POST, JSON array)."""
    from broadcast.gateways.tencent import CALLBACK_ACK

    return {"tencent": json_body_format(parse_callback, "Tencent callback", CALLBACK_ACK)}


class _Taken:
    def __init__(self, pull: Pull) -> None:
        self.pull = pull
        self.ids: set[int] = set()
        self.serials: set[str] = set()

    def take(self, row: dict[str, Any], api: str, delivery_id: int | None = None) -> None:
        for receipt in parse_pull_status({"PullSmsSendStatusSet": [row]}):
            if delivery_id is not None:
                receipt = replace(receipt, delivery_id=delivery_id)
            self.pull.add(receipt, {"pulled": api, "row": row})
            if receipt.delivery_id is not None:
                self.ids.add(receipt.delivery_id)
            if receipt.provider_id:
                self.serials.add(receipt.provider_id)

    def covers(self, c: Candidate) -> bool:
        return c.id in self.ids or bool(c.provider_id and c.provider_id in self.serials)


async def pull_tencent(gw: TencentGateway, cands: Sequence[Candidate], now: datetime, pull: Pull) -> None:
    if not gw.settings.pull_receipts:
        pull.note(PULL_OFF)
        return
    taken = _Taken(pull)
    # 1. the queue (each report once), at most 10 pages
    for _ in range(10):
        envelope = await pull.call(gw.api, "PullSmsSendStatus", {"SmsSdkAppId": gw.settings.sdk_app_id, "Limit": 100})
        rows = envelope.get("PullSmsSendStatusSet") if isinstance(envelope, dict) else None
        if not isinstance(rows, list):
            break
        for row in rows:
            if isinstance(row, dict):
                taken.take(row, "PullSmsSendStatus")
        if len(rows) < 100:
            break
    # 2. by phone number, for the deliveries the queue did not answer
    end = int(time.time())
    for c in cands:
        if taken.covers(c):
            continue
        pull.asked()
        begin = max(end - 7 * 86400 + 60, int((c.sent_at or now).timestamp()) - 600)
        body = {"BeginTime": begin, "EndTime": end, "Offset": 0, "Limit": 100, "PhoneNumber": c.phone,
                "SmsSdkAppId": gw.settings.sdk_app_id}
        envelope = await pull.call(gw.api, "PullSmsSendStatusByPhoneNumber", body)
        rows = envelope.get("PullSmsSendStatusSet") if isinstance(envelope, dict) else None
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict):
                continue
            serial = row.get("SerialNo")
            ok = (str(serial) == c.provider_id) if c.provider_id else tag_covers(row.get("SessionContext"), c.id) is not False
            if ok:
                taken.take(row, "PullSmsSendStatusByPhoneNumber", c.id)
                break


# -- parsing ------------------------------------------------------------------------------------

def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_pull_status(data: dict[str, Any] | bytes | str) -> list[Receipt]:
    """A ``PullSmsSendStatus`` / ``PullSmsSendStatusByPhoneNumber`` answer (the ``Response`` object or
    the whole envelope) → receipts. ``ReportStatus`` SUCCESS → delivered, FAIL → failed; provider id
    ``SerialNo``; delivery id from a ``SessionContext`` naming one delivery; time ``UserReceiveTime``."""
    if not isinstance(data, dict):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
    envelope = data.get("Response", data)
    rows = envelope.get("PullSmsSendStatusSet") if isinstance(envelope, dict) else None
    receipts: list[Receipt] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        status = str(row.get("ReportStatus", "")).upper()
        if status not in ("SUCCESS", "FAIL"):
            continue
        provider_id = _text(row.get("SerialNo"))
        delivery_id = tag_delivery_id(row.get("SessionContext"))
        if provider_id is None and delivery_id is None:
            continue
        try:
            at = datetime.fromtimestamp(int(row.get("UserReceiveTime")), UTC)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError, OSError):
            at = datetime.now(UTC)
        code = _text(row.get("Description")) or status
        receipts.append(Receipt(delivery_id, provider_id, "delivered" if status == "SUCCESS" else "failed", code, at))
    return receipts


def parse_callback(body: bytes | str | list[Any]) -> list[Receipt]:
    """The delivery-report push (a JSON array of ``{user_receive_time, nationcode, mobile,
    report_status, errmsg, description, sid}``) → receipts, provider id = ``sid`` (the ``SerialNo``).
    Raises ValueError when the body is not JSON. Answer the provider with ``CALLBACK_ACK``."""
    receipts: list[Receipt] = []
    for row in load_json_items(body):
        status = str(row.get("report_status", "")).upper()
        provider_id = _text(row.get("sid"))
        if status not in ("SUCCESS", "FAIL") or provider_id is None:
            continue
        at = parse_cst(row.get("user_receive_time")) or datetime.now(UTC)
        code = _text(row.get("errmsg")) or status
        delivery_id = tag_delivery_id(row.get("ext")) if row.get("ext") else None
        receipts.append(Receipt(delivery_id, provider_id, "delivered" if status == "SUCCESS" else "failed", code, at))
    return receipts

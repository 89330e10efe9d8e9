"""Aliyun's receipts: the SmsReport push format and the ``QuerySendDetails`` pull.

Pull, per delivery: its phone, the China-time date of its send, and the ``BizId`` of its provider
id when it has one; without one (an in-doubt send) the record whose ``OutId`` names the delivery
(or a batch range holding it, with the text in ``Content``). ``SendStatus`` 3 → delivered,
2 → failed, 1 → sent (settles an in-doubt delivery as ``accepted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from broadcast.gateways.base import Receipt
from broadcast.gateways.cloud_common import CST, parse_cst, phone_key, tag_covers
from broadcast.gateways.push import Candidate, Format, Pull, interim, json_body_format

if TYPE_CHECKING:
    from broadcast.gateways.aliyun import AliyunGateway

__all__ = ["formats", "pull_aliyun"]


def formats() -> dict[str, Format]:
    """Aliyun's delivery-report push (POST, JSON array)."""
    from broadcast.gateways.aliyun import SMS_REPORT_ACK, parse_sms_report

    return {"aliyun": json_body_format(parse_sms_report, "SmsReport", SMS_REPORT_ACK)}


def _cst_dates(sent_at: datetime | None, now: datetime) -> list[str]:
    at = (sent_at or now).astimezone(UTC)
    days = [at.astimezone(CST).strftime("%Y%m%d"), (at - timedelta(minutes=15)).astimezone(CST).strftime("%Y%m%d")]
    return list(dict.fromkeys(days))


def _match(c: Candidate, rows: list[dict[str, Any]] | None, biz_id: str | None) -> dict[str, Any] | None:
    for row in rows or []:
        if biz_id:
            ok = phone_key(row.get("PhoneNum")) == phone_key(c.phone)
        else:
            covers = tag_covers(row.get("OutId"), c.id)
            ok = bool(covers) or (covers is None and c.text in str(row.get("Content") or ""))
        if ok:
            return row
    return None


async def pull_aliyun(gw: AliyunGateway, cands: Sequence[Candidate], now: datetime, pull: Pull) -> None:
    for c in cands:
        pull.asked()
        biz_id = c.provider_id.partition(":")[0] if c.provider_id and ":" in c.provider_id else None
        for day in _cst_dates(c.sent_at, now):
            match = _match(c, await pull.call(gw.send_details, c.phone, day, biz_id, max_pages=1), biz_id)
            if match is None:
                continue
            status = str(match.get("SendStatus", ""))
            at = parse_cst(match.get("ReceiveDate")) or parse_cst(match.get("SendDate")) or now
            code = match.get("ErrCode")
            raw = {"pulled": "QuerySendDetails", "row": match}
            if status in ("2", "3"):
                kind: Literal["delivered", "failed"] = "delivered" if status == "3" else "failed"
                pull.add(Receipt(c.id, c.provider_id, kind, None if code is None else str(code), at), raw)
            elif c.status == "in_doubt":  # 1: waiting for the handset, but it was sent
                pull.add(interim(c.id, c.provider_id, "accepted", f"SendStatus:{status}", at), raw)
            break

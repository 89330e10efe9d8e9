"""Push formats of the kannel and simulator gateways (``KannelGateway.receipt_formats()``,
``SimulatorGateway.receipt_formats()``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, cast

from broadcast.gateways.base import Receipt
from broadcast.gateways.push import STATUSES, BadCallback, Incoming, ReceiptStatus, interim

__all__ = ["KANNEL_TYPES", "parse_kannel", "parse_simulator"]


def _epoch(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        return default


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


# -- Kannel -----------------------------------------------------------------------------------

#: Kannel ``%d`` -> our status. 1 delivered to phone, 2 non-delivered, 4 buffered on the SMSC,
#: 8 SMSC accepted, 16 SMSC rejected, 32 intermediate.
KANNEL_TYPES: dict[int, ReceiptStatus] = {1: "delivered", 2: "failed", 4: "buffered", 8: "accepted", 16: "failed", 32: "buffered"}
_STAT = re.compile(r"\bstat:(\w+)", re.IGNORECASE)
_ERR = re.compile(r"\berr:(\w+)", re.IGNORECASE)


def parse_kannel(req: Incoming) -> list[Receipt]:
    """Kannel's dlr-url callback, as built by ``broadcast.gateways.kannel.dlr_url``:
    ``?id=<delivery id>&type=%d&ts=%T&to=%p&reply=%A&fid=%F``. The code is ``<type>`` plus the
    SMPP ``stat``/``err`` of the SMSC reply when there is one (``1:DELIVRD``, ``2:UNDELIV:err001``),
    else the reply text (``8:ACK/``)."""
    kind = _int(req.arg("type"))
    if kind is None or kind not in KANNEL_TYPES:
        raise BadCallback(f"unknown Kannel report type {req.arg('type')!r}")
    delivery_id = _int(req.arg("id"))
    provider_id = (req.arg("fid") or "").strip()[:100] or None
    if delivery_id is None and provider_id is None:
        raise BadCallback("no delivery id ('id') and no SMSC id ('fid')")
    reply = (req.arg("reply") or "").strip()
    stat, err = _STAT.search(reply), _ERR.search(reply)
    code = str(kind)
    if stat:
        code += f":{stat.group(1)}"
        if err and err.group(1).strip("0"):
            code += f":err{err.group(1)}"
    elif reply:
        code += f":{reply}"
    at = _epoch(req.arg("ts"), req.received_at)
    status = KANNEL_TYPES[kind]
    if status in ("accepted", "buffered"):
        return [interim(delivery_id, provider_id, cast(Any, status), code[:100], at)]
    return [Receipt(delivery_id, provider_id, cast(Any, status), code[:100], at)]


# -- simulator --------------------------------------------------------------------------------

def parse_simulator(req: Incoming) -> list[Receipt]:
    """JSON ``{"delivery_id", "status", "code", "at"}`` or a list of them (``at``: ISO 8601 or
    Unix seconds; default: when received)."""
    try:
        data = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise BadCallback("body is not JSON") from None
    items = data if isinstance(data, list) else [data]
    out: list[Receipt] = []
    for item in items:
        if not isinstance(item, dict):
            raise BadCallback("expected a JSON object or a list of objects")
        status = item.get("status")
        if status not in STATUSES:
            raise BadCallback(f"status must be one of {sorted(STATUSES)}, not {status!r}")
        raw_id = item.get("delivery_id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str)) or not str(raw_id).isdigit():
            raise BadCallback(f"delivery_id must be an integer, not {raw_id!r}")
        code = item.get("code")
        out.append(Receipt(int(raw_id), None, cast(Any, status), None if code is None else str(code)[:100],
                           _when(item.get("at"), req.received_at)))
    return out


def _when(value: object, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadCallback(f"'at' is not ISO 8601: {value!r}") from None
        return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise BadCallback(f"'at' must be ISO 8601 or Unix seconds, not {value!r}")

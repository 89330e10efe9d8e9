"""Replies (mobile-originated messages, 上行) as the providers push them: one ``InboundFormat`` per URL
name, served by the receipts endpoint under ``/<name>`` and ``/<secret>/<name>`` (docs/replies.md says
what to configure at each provider, and what each one retries).

==================  ========================================  ==========================================
name                provider id (same when the push is resent)  time (→ UTC)
==================  ========================================  ==========================================
``kannel-mo``       ``id`` = Kannel's ``%I`` (the message's     ``time`` = ``%T`` (Unix seconds)
                    UUID, kept in bearerbox's store and in
                    smsbox's HTTP retries)
``aliyun-mo``       ``"<sequence_id>:<phone>"``                ``send_time`` (Beijing time)
``tencent-mo``      none (Tencent gives none)                   ``time`` (Unix seconds)
``cmas-mo``         none (云MAS documents none)                 ``sendTime`` (Beijing time)
``simulator-mo``    ``id`` when given                           ``at`` (ISO 8601 or Unix seconds)
==================  ========================================  ==========================================

``twilio-mo`` lives in ``replies_twilio`` (it shares the signature check of the Twilio receipts).
Without a provider id, ``broadcast.twoway.intake`` derives one from the content. A push without a
usable time is dated when it arrived. Numbers become E.164 (``+86…`` for mainland mobiles) where they
can be told; otherwise they are kept as received. ``raw`` is the body as received (the query string
of a GET). Every malformed push is a ``BadCallback`` (answered 400, nothing recorded).

The Tencent reply pull (``PullSmsReplyStatus``) is here too (``pull_tencent``): its rows are the push's
fields under other names.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from broadcast.gateways.base import Inbound
from broadcast.gateways.cloud_common import parse_cst, phone_key
from broadcast.gateways.push import BadCallback, InboundFormat, Incoming
from broadcast.recipients.phones import normalize_phone

if TYPE_CHECKING:
    from broadcast.gateways.tencent import TencentGateway

__all__ = ["ALIYUN_MO", "CMAS_MO", "KANNEL_GET_URL", "KANNEL_MO", "SIMULATOR_MO", "TENCENT_MO", "e164", "parse_aliyun_mo",
           "parse_cmas_mo", "parse_kannel_mo", "parse_simulator_mo", "parse_tencent_mo", "pull_tencent", "tencent_reply"]

MAX_ID = 100  # characters of a provider id kept


def e164(number: object, country_code: object = None) -> str:
    """A sender's number as the rest of the code writes it: E.164 where it can be told (``+86`` for an
    11-digit mainland mobile, ``country_code`` in front of a national number), else as received.
    Ranges are not checked: a reply comes from a number that exists."""
    text = str(number if number is not None else "").strip()
    if not text:
        raise BadCallback("no sender number")
    cc = str(country_code or "").strip().lstrip("+")
    if cc.isdigit() and text.isdigit() and not text.startswith(("00", cc)):
        text = f"+{cc}{text}"
    result = normalize_phone(text, ranges=False)
    return result.e164 or text[:32]


def _json(body: bytes, label: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadCallback(f"{label}: the body is not JSON") from None


def _objects(data: Any, label: str) -> list[dict[str, Any]]:
    """A JSON object or an array of objects → the objects (anything else is a ``BadCallback``)."""
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, dict) for item in items):
        raise BadCallback(f"{label}: expected a JSON object or an array of objects")
    return items


def _text(row: dict[str, Any], label: str, *names: str) -> str:
    """The reply's text from the first of ``names`` present (a reply may be empty, never missing)."""
    for name in names:
        if name in row:
            value = row[name]
            if value is None:
                return ""
            if isinstance(value, (dict, list, bool)):
                raise BadCallback(f"{label}: '{name}' is not text")
            return str(value)
    raise BadCallback(f"{label}: no '{names[0]}'")


def _epoch(value: object, label: str, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BadCallback(f"{label}: time {value!r} is not Unix seconds")
    try:
        return datetime.fromtimestamp(int(str(value).strip()), UTC)
    except (ValueError, OverflowError, OSError):
        raise BadCallback(f"{label}: time {value!r} is not Unix seconds") from None


def _beijing(value: object, label: str, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    at = parse_cst(value)
    if at is None:
        raise BadCallback(f"{label}: time {value!r} is not 'YYYY-MM-DD HH:MM:SS' (Beijing time)")
    return at


def _id(value: object) -> str | None:
    text = "" if value is None or isinstance(value, (dict, list, bool)) else str(value).strip()
    return text[:MAX_ID] or None


def _json_format(parse_rows: Callable[[Any, Incoming], list[Inbound]], label: str, ack: object) -> InboundFormat:
    def parse(req: Incoming) -> list[Inbound]:
        return parse_rows(_json(req.body, label), req)

    body = json.dumps(ack, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return InboundFormat(parse, body, "application/json; charset=utf-8")


# -- Kannel -----------------------------------------------------------------------------------

#: The ``get-url`` (or ``post-url``) query of the ``sms-service`` group, after the receipts URL +
#: ``/kannel-mo``: every value an escape code Kannel expands, URL-encoded. ``%b`` is the message as
#: received, in bytes (``%a`` would squeeze its spaces); ``%c``/``%C`` say how to read them.
KANNEL_GET_URL = "id=%I&from=%p&to=%P&text=%b&time=%T&coding=%c&charset=%C&smsc=%i"

#: Kannel charset names (``%C``, or a POST's Content-Type) → Python codecs.
_KANNEL_CHARSETS = {"UTF-16BE": "utf-16-be", "UCS-2": "utf-16-be", "UCS2": "utf-16-be", "UTF-16": "utf-16-be",
                    "UTF-8": "utf-8", "GSM": "utf-8", "WINDOWS-1252": "cp1252", "ISO-8859-1": "latin-1",
                    "8-BIT": "utf-8", "BINARY": "utf-8"}
_CHARSET_PARAM = re.compile(r"charset\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


def _kannel_codec(charset: str, coding: str) -> str:
    name = charset.strip().upper()
    if not name:
        return "utf-16-be" if coding.strip() == "2" else "utf-8"
    if name in _KANNEL_CHARSETS:
        return _KANNEL_CHARSETS[name]
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise BadCallback(f"Kannel MO: unknown charset {charset[:40]!r}") from None


def parse_kannel_mo(req: Incoming) -> list[Inbound]:
    """Kannel smsbox's ``sms-service`` call: a GET whose query is ``KANNEL_GET_URL`` expanded, or a
    ``post-url`` POST (the same query; the text is the body, its charset in Content-Type). The text's
    bytes are read with ``charset`` (``%C``; ``coding`` 2 without one: UTF-16BE), so a Chinese reply
    arrives intact whether smsbox recodes it (``mo-recode``) or not."""
    raw_query = req.raw_query
    pairs = parse_qsl(raw_query, keep_blank_values=True, encoding="latin-1") if raw_query else list(req.query)
    args: dict[str, str] = {}
    for key, value in pairs:
        args.setdefault(key, value)
    headers = {k.lower(): v for k, v in req.headers.items()}
    charset, coding = args.get("charset", ""), args.get("coding", "")
    if "text" in args:
        data = args["text"].encode("latin-1") if raw_query else args["text"].encode("utf-8")
        if not raw_query:
            charset = "UTF-8"  # already decoded by whoever built the query
    elif req.method == "POST":
        data = req.body
        declared = _CHARSET_PARAM.search(headers.get("content-type", ""))
        charset = declared.group(1) if declared else charset
    else:
        raise BadCallback("Kannel MO: no 'text' (set the sms-service get-url as docs/replies.md shows)")
    text = data.decode(_kannel_codec(charset, coding), errors="replace")
    phone = args.get("from") or headers.get("x-kannel-from", "")
    to = args.get("to") or headers.get("x-kannel-to", "")
    if "time" in args:
        at = _epoch(args["time"], "Kannel MO", req.received_at)
    else:
        stamp = headers.get("x-kannel-time", "")
        try:
            at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) if stamp else req.received_at
        except ValueError:
            raise BadCallback(f"Kannel MO: X-Kannel-Time {stamp[:40]!r} is not 'YYYY-MM-DD HH:MM:SS'") from None
    raw = raw_query.encode("latin-1") if req.method != "POST" else req.body
    return [Inbound("kannel", _id(args.get("id")), e164(phone), to.strip(), text, at, raw)]


#: No reply SMS goes back: the body is empty (and ``max-messages = 0`` in the sms-service group).
KANNEL_MO = InboundFormat(parse_kannel_mo, b"", "text/plain")


# -- simulator ----------------------------------------------------------------------------------


def _simulator_at(value: object, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _epoch(int(value), "simulator MO", default)
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadCallback(f"simulator MO: 'at' is not ISO 8601: {value[:40]!r}") from None
        return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    raise BadCallback(f"simulator MO: 'at' must be ISO 8601 or Unix seconds, not {value!r}")


def _simulator_rows(data: Any, req: Incoming) -> list[Inbound]:
    """``{"id", "phone", "text", "to", "at"}`` or an array of them (``id``, ``to``, ``at`` optional)."""
    out = []
    for row in _objects(data, "simulator MO"):
        out.append(Inbound("simulator", _id(row.get("id")), e164(row.get("phone")), str(row.get("to") or ""),
                           _text(row, "simulator MO", "text"), _simulator_at(row.get("at"), req.received_at), req.body))
    return out


SIMULATOR_MO = _json_format(_simulator_rows, "simulator MO", {"ok": True})


def parse_simulator_mo(req: Incoming) -> list[Inbound]:
    return SIMULATOR_MO.parse(req)


# -- Aliyun -------------------------------------------------------------------------------------


def _aliyun_rows(data: Any, req: Incoming) -> list[Inbound]:
    """SmsUp HTTP batch push: a JSON array of ``{phone_number, content, send_time, sign_name,
    dest_code, sequence_id}``; provider id ``"<sequence_id>:<phone>"``, extension ``dest_code``."""
    out = []
    for row in _objects(data, "Aliyun SmsUp"):
        phone = e164(row.get("phone_number"))
        seq = _id(row.get("sequence_id"))
        dest = str(row.get("dest_code") or "").strip()
        out.append(Inbound("aliyun", f"{seq}:{phone_key(phone)}"[:MAX_ID] if seq else None, phone, dest,
                           _text(row, "Aliyun SmsUp", "content"),
                           _beijing(row.get("send_time"), "Aliyun SmsUp", req.received_at), req.body, dest))
    return out


ALIYUN_MO = _json_format(_aliyun_rows, "Aliyun SmsUp", {"code": 0, "msg": "接收成功"})


def parse_aliyun_mo(req: Incoming) -> list[Inbound]:
    return ALIYUN_MO.parse(req)


# -- Tencent ------------------------------------------------------------------------------------


def _tencent_rows(data: Any, req: Incoming) -> list[Inbound]:
    """短信回复 push: ``{extend, mobile, nationcode, sign, text, time}`` (one per push; an array is
    taken too). No id: intake derives one."""
    out = []
    for row in _objects(data, "Tencent reply"):
        extend = str(row.get("extend") or "").strip()
        out.append(Inbound("tencent", None, e164(row.get("mobile"), row.get("nationcode") or "86"), extend,
                           _text(row, "Tencent reply", "text"), _epoch(row.get("time"), "Tencent reply", req.received_at),
                           req.body, extend))
    return out


TENCENT_MO = _json_format(_tencent_rows, "Tencent reply", {"result": 0, "errmsg": "OK"})


def parse_tencent_mo(req: Incoming) -> list[Inbound]:
    return TENCENT_MO.parse(req)


def tencent_reply(row: dict[str, Any], now: datetime) -> Inbound | None:
    """One ``PullSmsReplyStatusSet`` row (``PhoneNumber``, ``CountryCode``, ``SubscriberNumber``,
    ``ReplyContent``, ``ReplyTime`` (Unix seconds), ``ExtendCode``, ``SignName``); None without a number."""
    number = row.get("PhoneNumber") or row.get("SubscriberNumber")
    if not number:
        return None
    try:
        phone = e164(number, row.get("CountryCode") or "86")
        at = _epoch(row.get("ReplyTime"), "PullSmsReplyStatus", now)
    except BadCallback:
        return None
    extend = str(row.get("ExtendCode") or "").strip()
    raw = json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return Inbound("tencent", None, phone, extend, str(row.get("ReplyContent") or ""), at, raw, extend)


async def pull_tencent(gw: TencentGateway, since: datetime, pages: int = 10) -> list[Inbound]:
    """``PullSmsReplyStatus`` (a queue: each reply is handed out once, so every row is kept, whatever
    ``since`` says), up to ``pages`` × 100 rows. Tencent enables pulling on request. Raises
    ``LookupError`` on an error answer and the httpx errors on a transport failure."""
    out: list[Inbound] = []
    now = datetime.now(UTC)
    for _ in range(pages):
        envelope = await gw.api("PullSmsReplyStatus", {"SmsSdkAppId": gw.settings.sdk_app_id, "Limit": 100})
        rows = envelope.get("PullSmsReplyStatusSet")
        rows = rows if isinstance(rows, list) else []
        out += [r for r in (tencent_reply(row, now) for row in rows if isinstance(row, dict)) if r is not None]
        if len(rows) < 100:
            break
    return out


# -- 云MAS --------------------------------------------------------------------------------------


def parse_cmas_mo(req: Incoming) -> list[Inbound]:
    """云MAS 上行 push: JSON or Base64 JSON (as its status reports), one object or an array, with
    ``mobile``, ``smsContent``, ``sendTime`` (Beijing time) and ``addSerial`` (the extension). The
    names are those of the integrations we could read, not of a published specification: ``content``
    and ``moContent`` are taken for the text, ``moTime``/``receiveTime`` for the time, ``extCode`` for
    the extension. No id: intake derives one."""
    from broadcast.gateways.cmas import decode_json

    data = decode_json(req.body)
    if data is None:
        raise BadCallback("云MAS MO: the body is neither JSON nor Base64 of JSON")
    out = []
    for row in _objects(data, "云MAS MO"):
        ext = str(row.get("addSerial") or row.get("extCode") or "").strip()
        when = row.get("sendTime") or row.get("moTime") or row.get("receiveTime")
        out.append(Inbound("cmas", None, e164(row.get("mobile")), ext, _text(row, "云MAS MO", "smsContent", "content", "moContent"),
                           _beijing(when, "云MAS MO", req.received_at), req.body, ext))
    return out


CMAS_MO = InboundFormat(parse_cmas_mo, b"success", "text/plain")

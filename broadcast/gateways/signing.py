"""Request signing for the cloud SMS providers: pure functions, no I/O, no clock.

Each scheme is tested against the provider's own published worked example (``tests/gateways/test_signing.py``):

* ``aliyun_rpc_signature`` — Alibaba Cloud RPC signature V1 (HMAC-SHA1, POP percent-encoding);
* ``tc3_authorization`` — Tencent Cloud API 3.0 ``TC3-HMAC-SHA256``;
* ``twilio_signature`` / ``validate_twilio_signature`` — Twilio's ``X-Twilio-Signature`` on webhooks;
* ``dingtalk_robot_sign`` — a DingTalk custom robot's ``sign`` query parameter;
* ``feishu_robot_sign`` — a Feishu (Lark) custom bot's ``sign`` body field.

The robots' schemes have no published worked example with its result: their tests compare with
values computed independently in the test (plain ``hmac``/``hashlib``) from the documented formula.

Secrets are taken as plain ``str`` (the caller unwraps its ``SecretStr`` at the last moment) and never
appear in a return value other than as a MAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = [
    "aliyun_canonical_query",
    "aliyun_percent_encode",
    "aliyun_rpc_signature",
    "aliyun_string_to_sign",
    "dingtalk_robot_sign",
    "feishu_robot_sign",
    "tc3_authorization",
    "tc3_signature",
    "twilio_signature",
    "validate_twilio_signature",
]

# ---------------------------------------------------------------------------------------------
# Alibaba Cloud RPC signature V1


def aliyun_percent_encode(value: str) -> str:
    """POP encoding over UTF-8: only ``A-Z a-z 0-9 - _ . ~`` stay literal; everything else is ``%XY``
    with uppercase hex (so space → ``%20``, ``*`` → ``%2A``, ``~`` stays)."""
    return quote(value, safe="-_.~")


def aliyun_canonical_query(params: Mapping[str, str]) -> str:
    """Every parameter except ``Signature``, sorted by name (byte order), ``enc(k)=enc(v)`` joined by ``&``."""
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    return "&".join(f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}" for k, v in pairs)


def aliyun_string_to_sign(params: Mapping[str, str], method: str = "POST") -> str:
    """``METHOD&%2F&enc(canonical query)``."""
    return f"{method.upper()}&{aliyun_percent_encode('/')}&{aliyun_percent_encode(aliyun_canonical_query(params))}"


def aliyun_rpc_signature(params: Mapping[str, str], access_key_secret: str, method: str = "POST") -> str:
    """``Base64(HMAC-SHA1(secret + "&", StringToSign))`` — the value of the ``Signature`` parameter
    (before it is itself percent-encoded into the request)."""
    digest = hmac.new(
        (access_key_secret + "&").encode("utf-8"), aliyun_string_to_sign(params, method).encode("utf-8"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Tencent Cloud TC3-HMAC-SHA256


def _hmac256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """Hex ``HMAC-SHA256(SecretSigning, StringToSign)`` with the derived key chain
    ``"TC3"+key → date → service → "tc3_request"``."""
    secret_date = _hmac256(("TC3" + secret_key).encode("utf-8"), date)
    secret_service = _hmac256(secret_date, service)
    secret_signing = _hmac256(secret_service, "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def tc3_authorization(
    secret_id: str,
    secret_key: str,
    *,
    service: str,
    host: str,
    content_type: str,
    payload: bytes,
    timestamp: int,
    method: str = "POST",
    query: str = "",
    extra_headers: Mapping[str, str] | None = None,
) -> str:
    """The ``Authorization`` header value for one request.

    ``host`` and ``content_type`` must be byte-for-byte what is sent; ``extra_headers`` (e.g.
    ``{"X-TC-Action": "SendSms"}``) are signed too. The credential date is the **UTC** date of
    ``timestamp`` (Beijing time breaks every request between 00:00 and 08:00 CST).
    """
    headers = {"content-type": content_type, "host": host}
    for name, value in (extra_headers or {}).items():
        headers[name.lower()] = value
    names = sorted(headers)
    canonical_headers = "".join(f"{n}:{headers[n].strip().lower()}\n" for n in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        [method.upper(), "/", query, canonical_headers, signed_headers, hashlib.sha256(payload).hexdigest()]
    )
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    signature = tc3_signature(secret_key, date, service, string_to_sign)
    return f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"


# ---------------------------------------------------------------------------------------------
# Twilio X-Twilio-Signature

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(params: Params) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    return [(str(k), str(v)) for k, v in items]


def twilio_signature(url: str, params: Params, auth_token: str) -> str:
    """``Base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 …))`` with the POST
    parameters sorted by name then value (a repeated name contributes each of its pairs)."""
    data = url + "".join(k + v for k, v in sorted(_pairs(params)))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port (Twilio may have
    signed either form, as its own SDK validators acknowledge)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    without = urlunsplit((parts.scheme, prefix + host, parts.path, parts.query, parts.fragment))
    variants = [url, without]
    if default is not None:
        variants.append(urlunsplit((parts.scheme, f"{prefix}{host}:{default}", parts.path, parts.query, parts.fragment)))
    return list(dict.fromkeys(variants))


def validate_twilio_signature(url: str, params: Params | str | bytes, signature: str, auth_token: str) -> bool:
    """True when ``signature`` (the ``X-Twilio-Signature`` header) matches the request.

    ``url`` is the full URL Twilio called (scheme, host, path and query, as the public side of a
    reverse proxy sees it); ``params`` the decoded form parameters. For JSON-bodied webhooks pass the
    raw body (``str``/``bytes``): the URL then carries ``bodySHA256`` and only the URL is signed.
    Compared in constant time; tried with and without the default port.
    """
    if not signature or not auth_token:
        return False
    if isinstance(params, (str, bytes)):
        body = params.encode("utf-8") if isinstance(params, str) else params
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        expected_hash = query.get("bodySHA256", "")
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), expected_hash.lower()):
            return False
        pairs: list[tuple[str, str]] = []
    else:
        pairs = _pairs(params)
    given = signature.encode("utf-8")
    ok = False
    for candidate in _port_variants(url):
        ok |= hmac.compare_digest(twilio_signature(candidate, pairs, auth_token).encode("ascii"), given)
    return ok


# ---------------------------------------------------------------------------------------------
# Group-chat robots


def dingtalk_robot_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk custom robot (加签): urlencode(base64(HMAC-SHA256(key = secret, message = timestamp +
    "\n" + secret))), UTF-8, ready to be put in the query as ``sign``; ``timestamp_ms`` is the
    ``timestamp`` parameter sent with it (milliseconds, within an hour of DingTalk's clock)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote(base64.b64encode(mac).decode("ascii"), safe="")


def feishu_robot_sign(secret: str, timestamp_s: int) -> str:
    """Feishu custom bot (签名校验): base64(HMAC-SHA256(key = timestamp + "\n" + secret, message =
    empty)), sent in the JSON body as ``sign`` beside ``timestamp`` (seconds, as a string, within
    an hour of Feishu's clock). Note the key and the message are the other way round from DingTalk's."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")

"""Local fakes of Aliyun dysmsapi, Tencent Cloud SMS, the Twilio Messages API and Kannel's smsbox
sendsms: real HTTP servers on 127.0.0.1 (``http.server``, one thread per request) speaking each
provider's documented wire format and verifying each request the way the provider does (Aliyun's RPC
signature V1, Tencent's TC3 signature over the ``Host`` header as sent, Twilio's basic auth, the
sendsms-user's password) — the same checks as the ``httpx.MockTransport`` fakes of
``test_aliyun.py``/``test_tencent.py``/``test_twilio.py``/``test_kannel.py``.

Each fake keeps what it was sent (``sent``), can be told how each message ends (``settle``), can
hang before answering a given number (``hang``: the client times out although the provider has the
message — an in-doubt send), answers its pull APIs from that state, and can push delivery reports
to a receipts endpoint in its own push format (``push``). It refuses the numbers of ``dead`` the
way the provider refuses an invalid number (nothing sent), and with ``fail_status`` set answers
every send with that HTTP status (a provider that is down). ``transport()`` is the same fake behind an
``httpx.MockTransport`` (no socket: the contract kit's cases, ``cases.py``).

The fake of China Mobile 云MAS (``FakeCmas``) is in ``fake_cmas.py``, on the same ``FakeProvider``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from broadcast.gateways.cloud_common import phone_key
from broadcast.gateways.signing import (
    aliyun_rpc_signature,
    tc3_authorization,
    twilio_signature,
)

CST = timezone(timedelta(hours=8))


@dataclass
class Sent:
    """One message as the provider holds it."""

    provider_id: str  # Aliyun BizId, Tencent SerialNo, Twilio sid
    phone: str
    text: str
    tag: str  # OutId / SessionContext / StatusCallback URL
    at: datetime
    status: str = "sent"  # sent | delivered | failed
    code: str = ""
    pulled: bool = False  # Tencent's PullSmsSendStatus queue hands each report out once


class FakeProvider:
    """The HTTP plumbing; subclasses implement ``handle``."""

    name = "fake"

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.requests: list[str] = []  # action per request, in order
        self.rejected = 0  # requests whose signature/auth failed
        self.hang: dict[str, float] = {}  # phone_key -> seconds to sleep before answering
        self.dead: set[str] = set()  # phone_keys refused as invalid numbers
        self.fail_status: int | None = None  # answer every send with this status (e.g. 500)
        self.refused = 0  # sends refused for a dead number
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # -- state ---------------------------------------------------------------------------

    def settle(self, phone: str, status: str, code: str) -> None:
        for s in self.by_phone(phone):
            s.status, s.code = status, code

    def by_phone(self, phone: str) -> list[Sent]:
        return [s for s in self.sent if phone_key(s.phone) == phone_key(phone)]

    def _record(self, provider_id: str, phone: str, text: str, tag: str) -> Sent:
        s = Sent(provider_id, phone, text, tag, datetime.now(UTC))
        with self._lock:
            self.sent.append(s)
        return s

    def _dead(self, phones: list[str]) -> list[str]:
        dead = [p for p in phones if phone_key(p) in self.dead]
        if dead:
            with self._lock:
                self.refused += 1
        return dead

    def _maybe_hang(self, phones: list[str]) -> None:
        delay = max((self.hang.get(phone_key(p), 0.0) for p in phones), default=0.0)
        if delay:
            time.sleep(delay)

    # -- serving -------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError

    def transport(self) -> httpx.MockTransport:
        """The same fake without a socket: ``handle`` behind an ``httpx.MockTransport`` (a ``hang``
        sleeps in the handler, which no client timeout interrupts: use ``running`` for that)."""

        def answer(request: httpx.Request) -> httpx.Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            status, extra, data = self.handle(request.method, request.url.raw_path.decode("ascii"), headers, request.content)
            return httpx.Response(status, headers={"Content-Type": "application/json", **extra}, content=data)

        return httpx.MockTransport(answer)

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body in separate writes: no delayed-ACK stall

            def _go(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, extra, data = fake.handle(self.command, self.path, headers, body)
                except Exception as exc:  # a bug in the fake: show it in the test
                    status, extra, data = 500, {}, f"fake error: {type(exc).__name__}: {exc}".encode()
                try:
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", **extra}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out) — the provider still has the message

            do_GET = do_POST = _go

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"fake-{self.name}", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def _json(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json;charset=utf-8"}, json.dumps(data, ensure_ascii=False).encode()


# -- Aliyun --------------------------------------------------------------------------------------


class FakeAliyun(FakeProvider):
    """dysmsapi 2017-05-25: SendSms, SendBatchSms, QuerySendDetails; pushes SmsReport."""

    name = "aliyun"

    def __init__(self, access_key_id: str, secret: str, template_param: str = "content") -> None:
        super().__init__()
        self.access_key_id, self.secret, self.template_param = access_key_id, secret, template_param

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if method != "POST" or headers.get("content-type") != "application/x-www-form-urlencoded":
            return _json(400, {"Code": "MissingParameter", "Message": "expected a form POST"})
        params = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != self.access_key_id:
            self.rejected += 1
            return _json(404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."})
        if signature != aliyun_rpc_signature(params, self.secret, "POST"):
            self.rejected += 1
            return _json(400, {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched with our calculation."})
        action = params.get("Action", "")
        self.requests.append(action)
        if action == "SendSms":
            phones = params["PhoneNumbers"].split(",")
            text = json.loads(params["TemplateParam"])[self.template_param]
            texts = [text] * len(phones)
        elif action == "SendBatchSms":
            phones = json.loads(params["PhoneNumberJson"])
            texts = [p[self.template_param] for p in json.loads(params["TemplateParamJson"])]
        elif action == "QuerySendDetails":
            return self._details(params)
        else:
            return _json(404, {"Code": "InvalidAction.NotFound", "Message": action})
        if self.fail_status:
            return _json(self.fail_status, {"Code": "isp.SYSTEM_ERROR", "Message": "系统错误"})
        if self._dead(phones):  # the whole request is refused, nothing is sent
            return _json(200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号", "RequestId": "r"})
        biz_id = f"{next(self._ids):06d}^0"
        sign = params.get("SignName") or json.loads(params.get("SignNameJson", '[""]'))[0]
        for phone, text in zip(phones, texts):
            self._record(biz_id, phone, f"【{sign}】{text}", params.get("OutId", ""))
        self._maybe_hang(phones)
        return _json(200, {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": f"req-{biz_id}"})

    def _details(self, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        rows = [s for s in self.by_phone(params["PhoneNumber"])
                if s.at.astimezone(CST).strftime("%Y%m%d") == params["SendDate"]
                and (not params.get("BizId") or s.provider_id == params["BizId"])]
        page, size = int(params.get("CurrentPage", "1")), int(params.get("PageSize", "10"))
        chunk = rows[(page - 1) * size: page * size]
        dtos = [{"PhoneNum": phone_key(s.phone), "SendStatus": {"sent": 1, "failed": 2, "delivered": 3}[s.status],
                 "ErrCode": s.code or "", "TemplateCode": "SMS_100001", "Content": s.text, "OutId": s.tag,
                 "SendDate": s.at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S"),
                 "ReceiveDate": s.at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S") if s.status != "sent" else ""}
                for s in chunk]
        return _json(200, {"Code": "OK", "Message": "OK", "TotalCount": len(rows), "RequestId": "q",
                           "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos}})

    def report(self, phones: list[str]) -> list[dict[str, Any]]:
        """SmsReport rows for the final messages to these numbers."""
        out = []
        for phone in phones:
            for s in self.by_phone(phone):
                if s.status == "sent":
                    continue
                at = s.at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
                out.append({"phone_number": phone_key(s.phone), "send_time": at, "report_time": at,
                            "success": s.status == "delivered", "err_code": s.code, "err_msg": "用户接收成功" if s.status == "delivered" else "失败",
                            "sms_size": "1", "biz_id": s.provider_id, "out_id": s.tag})
        return out

    def push(self, url: str, phones: list[str]) -> httpx.Response:
        """POST an SmsReport batch to ``url`` (…/aliyun) as Aliyun's HTTP batch push does."""
        return httpx.post(url, content=json.dumps(self.report(phones), ensure_ascii=False).encode(),
                          headers={"Content-Type": "application/json"}, timeout=10)


# -- Tencent -------------------------------------------------------------------------------------


class FakeTencent(FakeProvider):
    """SMS API 3.0 (2021-01-11): SendSms, PullSmsSendStatus, PullSmsSendStatusByPhoneNumber,
    DescribeSmsTemplateList; pushes the delivery-report callback."""

    name = "tencent"

    def __init__(self, secret_id: str, secret_key: str, template_id: str = "449739") -> None:
        super().__init__()
        self.secret_id, self.secret_key, self.template_id = secret_id, secret_key, template_id
        self.dead_request_level = False  # a dead number: Response.Error for the request, not a SendStatusSet row

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        def error(code: str, message: str) -> tuple[int, dict[str, str], bytes]:
            return _json(200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "r"}})

        h = headers
        action = h.get("x-tc-action", "")
        if method != "POST" or h.get("x-tc-version") != "2021-01-11" or not h.get("x-tc-region"):
            return error("MissingParameter", "X-TC-Version and X-TC-Region are required")
        if not h.get("authorization", "").startswith(f"TC3-HMAC-SHA256 Credential={self.secret_id}/"):
            self.rejected += 1
            return error("AuthFailure.SecretIdNotFound", "The SecretId is not found")
        expected = tc3_authorization(self.secret_id, self.secret_key, service="sms", host=h.get("host", ""),
                                     content_type=h.get("content-type", ""), payload=body,
                                     timestamp=int(h.get("x-tc-timestamp", "0")), extra_headers={"X-TC-Action": action})
        if h.get("authorization") != expected:
            self.rejected += 1
            return error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        data = json.loads(body)
        self.requests.append(action)
        if action == "SendSms":
            if self.fail_status:
                return self.fail_status, {"Content-Type": "text/html"}, f"<html>{self.fail_status} Server Error</html>".encode()
            dead = self._dead(data["PhoneNumberSet"])
            if dead and self.dead_request_level:
                return error("InvalidParameterValue.IncorrectPhoneNumber", f"手机号码格式错误: {dead[0]}")
            rows = []
            for phone in data["PhoneNumberSet"]:
                if phone in dead:  # a per-number status, the others of the request still go
                    rows.append({"SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": data.get("SessionContext", ""),
                                 "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "incorrect number", "IsoCode": "CN"})
                    continue
                serial = f"2433:{next(self._ids):08d}"
                self._record(serial, phone, data["TemplateParamSet"][0], data.get("SessionContext", ""))
                rows.append({"SerialNo": serial, "PhoneNumber": phone, "Fee": 1, "SessionContext": data.get("SessionContext", ""),
                             "Code": "Ok", "Message": "send success", "IsoCode": "CN"})
            self._maybe_hang(data["PhoneNumberSet"])
            return _json(200, {"Response": {"SendStatusSet": rows, "RequestId": "r"}})
        if action == "PullSmsSendStatus":
            with self._lock:
                due = [s for s in self.sent if s.status != "sent" and not s.pulled][: int(data.get("Limit", 100))]
                for s in due:
                    s.pulled = True
            return _json(200, {"Response": {"PullSmsSendStatusSet": [self._pull_row(s) for s in due], "RequestId": "r"}})
        if action == "PullSmsSendStatusByPhoneNumber":
            rows = [self._pull_row(s) for s in self.by_phone(data["PhoneNumber"])
                    if s.status != "sent" and data["BeginTime"] <= s.at.timestamp() <= data["EndTime"] + 1]
            return _json(200, {"Response": {"PullSmsSendStatusSet": rows, "RequestId": "r"}})
        if action == "DescribeSmsTemplateList":
            rows = [{"TemplateId": t, "International": 0, "StatusCode": 0 if str(t) == self.template_id else -1,
                     "ReviewReply": "", "TemplateName": "全文", "CreateTime": 1617379200}
                    for t in data.get("TemplateIdSet", [])]
            return _json(200, {"Response": {"DescribeTemplateStatusSet": rows, "RequestId": "r"}})
        return error("InvalidAction", f"unknown action {action}")

    @staticmethod
    def _pull_row(s: Sent) -> dict[str, Any]:
        return {"UserReceiveTime": int(s.at.timestamp()), "CountryCode": "86", "SubscriberNumber": phone_key(s.phone),
                "PhoneNumber": s.phone, "SerialNo": s.provider_id, "ReportStatus": "SUCCESS" if s.status == "delivered" else "FAIL",
                "Description": s.code, "SessionContext": s.tag}

    def callback(self, phones: list[str]) -> list[dict[str, Any]]:
        out = []
        for phone in phones:
            for s in self.by_phone(phone):
                if s.status != "sent":
                    out.append({"user_receive_time": s.at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S"), "nationcode": "86",
                                "mobile": phone_key(s.phone), "report_status": "SUCCESS" if s.status == "delivered" else "FAIL",
                                "errmsg": s.code, "description": "用户短信送达成功" if s.status == "delivered" else "失败",
                                "sid": s.provider_id})
        return out

    def push(self, url: str, phones: list[str]) -> httpx.Response:
        """POST the delivery-report callback (a JSON array) to ``url`` (…/tencent)."""
        return httpx.post(url, content=json.dumps(self.callback(phones), ensure_ascii=False).encode(),
                          headers={"Content-Type": "application/json"}, timeout=10)


# -- Twilio --------------------------------------------------------------------------------------


class FakeTwilio(FakeProvider):
    """Messages API 2010-04-01: create, fetch, list by To/DateSent, and the Account; posts signed
    StatusCallbacks."""

    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid, self.auth_token = account_sid, auth_token
        self.sender: dict[str, str] = {}

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if headers.get("authorization") != expected:
            self.rejected += 1
            return _json(401, {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})
        parts = urlsplit(path)
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        if parts.path == f"{base}.json" and method == "GET":
            self.requests.append("Account")
            return _json(200, {"sid": self.account_sid, "status": "active", "type": "Full", "friendly_name": "fake"})
        if parts.path == f"{base}/Messages.json" and method == "POST":
            self.requests.append("Messages.create")
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            if not form.get("From") and not form.get("MessagingServiceSid"):
                return _json(400, {"code": 21603, "message": "A 'From' phone number is required.", "status": 400})
            if self.fail_status:
                return _json(self.fail_status, {"code": 20500, "message": "Internal Server Error", "status": self.fail_status})
            if self._dead([form["To"]]):
                return _json(400, {"code": 21211, "message": f"The 'To' number {form['To']} is not a valid phone number.",
                                   "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
            sid = f"SM{next(self._ids):032x}"
            self._record(sid, form["To"], form["Body"], form.get("StatusCallback", ""))
            self.sender[sid] = form.get("From", "")
            self._maybe_hang([form["To"]])
            return _json(201, self._message(self.by_sid(sid)))
        if parts.path == f"{base}/Messages.json" and method == "GET":
            self.requests.append("Messages.list")
            q = dict(parse_qsl(parts.query))
            rows = [self._message(s) for s in self.sent if s.phone == q.get("To")
                    and (not q.get("DateSent") or s.at.date().isoformat() == q["DateSent"])]
            return _json(200, {"messages": rows, "page": 0, "page_size": 50})
        if parts.path.startswith(f"{base}/Messages/") and parts.path.endswith(".json") and method == "GET":
            self.requests.append("Messages.fetch")
            sid = parts.path.rsplit("/", 1)[1].removesuffix(".json")
            try:
                return _json(200, self._message(self.by_sid(sid)))
            except KeyError:
                return _json(404, {"code": 20404, "message": "not found", "status": 404})
        return _json(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})

    def by_sid(self, sid: str) -> Sent:
        for s in self.sent:
            if s.provider_id == sid:
                return s
        raise KeyError(sid)

    def _message(self, s: Sent) -> dict[str, Any]:
        status = {"sent": "sent", "delivered": "delivered", "failed": "undelivered"}[s.status]
        return {"sid": s.provider_id, "account_sid": self.account_sid, "to": s.phone, "from": self.sender.get(s.provider_id),
                "body": s.text, "status": status, "num_segments": "1", "error_code": int(s.code) if s.code.isdigit() else None,
                "date_created": s.at.strftime("%a, %d %b %Y %H:%M:%S +0000"), "api_version": "2010-04-01"}

    def callback_params(self, s: Sent) -> dict[str, str]:
        status = {"sent": "sent", "delivered": "delivered", "failed": "undelivered"}[s.status]
        params = {"MessageSid": s.provider_id, "SmsSid": s.provider_id, "MessageStatus": status, "SmsStatus": status,
                  "AccountSid": self.account_sid, "From": self.sender.get(s.provider_id) or "", "To": s.phone,
                  "ApiVersion": "2010-04-01"}
        if s.status == "failed":
            params["ErrorCode"] = s.code
        return params

    def push(self, public_base: str, local_base: str, phones: list[str], *, token: str | None = None) -> list[httpx.Response]:
        """POST each message's StatusCallback, signed for the URL Twilio was given (under
        ``public_base``, the reverse proxy's address) but delivered to ``local_base`` — what the
        proxy does. ``token`` signs with another key (a forged callback)."""
        out = []
        for phone in phones:
            for s in self.by_phone(phone):
                url = s.tag
                assert url.startswith(public_base), (url, public_base)
                params = self.callback_params(s)
                signature = twilio_signature(url, params, token or self.auth_token)
                out.append(httpx.post(local_base + url[len(public_base):], data=params, timeout=10,
                                      headers={"X-Twilio-Signature": signature, "I-Twilio-Idempotency-Token": s.provider_id}))
        return out


# -- Kannel --------------------------------------------------------------------------------------


class FakeKannel(FakeProvider):
    """smsbox's ``GET /cgi-bin/sendsms`` for one ``sendsms-user``, answering as ``gw/smsbox.c`` does;
    ``dead`` numbers are on its black-list."""

    name = "kannel"

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self.username, self.password = username, password

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        def text(status: int, answer: str) -> tuple[int, dict[str, str], bytes]:
            return status, {"Content-Type": "text/html"}, answer.encode()

        parts = urlsplit(path)
        if parts.path != "/cgi-bin/sendsms":
            return text(404, "Unknown request.")
        q = dict(parse_qsl(parts.query, keep_blank_values=True))
        if q.get("username") != self.username or q.get("password") != self.password:
            self.rejected += 1
            return text(403, "Authorization failed for sendsms")
        self.requests.append("sendsms")
        if self.fail_status:
            return text(self.fail_status, "Temporal failure, try again later.")
        if not q.get("to"):
            return text(400, "Missing receiver number, rejected")
        if self._dead([q["to"]]):
            return text(400, "Number(s) has/have been denied by white- and/or black-lists.")
        self._record(f"kannel-{next(self._ids)}", q["to"], q.get("text", ""), q.get("dlr-url", ""))
        self._maybe_hang([q["to"]])
        return text(202, "0: Accepted for delivery")

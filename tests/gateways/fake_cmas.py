"""A local fake of China Mobile 云MAS's HTTP API (``norsubmit`` / ``tmpsubmit``), beside the other
fakes of ``fakes.py`` (kept in its own module so that neither passes 500 lines).

It decodes the Base64 JSON body, checks ``ecName``/``apId``/``secretKey`` (``InvalidUsrOrPwd``),
recomputes ``mac`` from the documented concatenation with ``hashlib`` (``IllegalMac``), checks the
signature code (``NoSignId``/``IllegalSignId``) and refuses more than ``max_mobiles`` numbers
(``TooManyMobiles``, 5,000 as documented; lower it to force a split). ``script`` holds ``rspcod``s to
answer the next sends with (``FlowOverLimit``, …), one per request. Accepted requests get a
22-digit ``msgGroup``; ``push`` posts status reports (JSON, or Base64 JSON) for settled numbers.
云MAS refuses no single number at submit time (a dead number comes back as a failed report), so
``dead`` is not used here: the gateway itself refuses numbers that are not mainland mobiles.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx

from broadcast.gateways.cloud_common import phone_key
from tests.gateways.fakes import CST, FakeProvider, _json


class FakeCmas(FakeProvider):
    """云MAS ``POST …/sms/norsubmit`` and ``…/sms/tmpsubmit``; pushes status reports."""

    name = "cmas"

    def __init__(self, ec_name: str, ap_id: str, secret: str, sign: str = "wHwvfNuH5") -> None:
        super().__init__()
        self.ec_name, self.ap_id, self.secret, self.sign = ec_name, ap_id, secret, sign
        self.max_mobiles = 5000
        self.script: list[str] = []  # rspcods to answer the next sends with
        self.batches: list[int] = []  # mobiles per accepted request
        self.bodies: list[dict[str, Any]] = []  # every decoded request body

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        def answer(code: str) -> tuple[int, dict[str, str], bytes]:
            return _json(200, {"rspcod": code, "msgGroup": "", "success": False})

        kind = path.rstrip("/").rsplit("/", 1)[-1]
        if method != "POST" or kind not in ("norsubmit", "tmpsubmit"):
            return 404, {"Content-Type": "text/html"}, b"<html>404 Not Found</html>"
        if headers.get("content-type", "").replace(" ", "").lower() != "application/json;charset=utf-8":
            return answer("InvalidMessage")
        try:
            data = json.loads(base64.b64decode(body, validate=True))
        except ValueError:
            return answer("InvalidMessage")
        self.bodies.append(data)
        self.requests.append(kind)
        if (data.get("ecName"), data.get("apId"), data.get("secretKey")) != (self.ec_name, self.ap_id, self.secret):
            self.rejected += 1
            return answer("InvalidUsrOrPwd")
        middle = [data["templateId"], data["mobiles"], data["params"]] if kind == "tmpsubmit" else [data["mobiles"], data["content"]]
        plain = "".join([data["ecName"], data["apId"], data["secretKey"], *middle, data["sign"], data["addSerial"]])
        if data.get("mac") != hashlib.md5(plain.encode("utf-8")).hexdigest():
            self.rejected += 1
            return answer("IllegalMac")
        if not data["sign"]:
            return answer("NoSignId")
        if data["sign"] != self.sign:
            return answer("IllegalSignId")
        mobiles = data["mobiles"].split(",")
        if len(mobiles) > self.max_mobiles:
            return answer("TooManyMobiles")
        if self.fail_status:
            return self.fail_status, {"Content-Type": "text/html"}, f"<html>{self.fail_status} Server Error</html>".encode()
        if self.script:
            return answer(self.script.pop(0))
        text = json.loads(data["params"])[0] if kind == "tmpsubmit" else data["content"]
        group = f"{next(self._ids):022d}"
        for mobile in mobiles:
            self._record(group, mobile, text, kind)
        self.batches.append(len(mobiles))
        self._maybe_hang(mobiles)
        return _json(200, {"rspcod": "success", "msgGroup": group, "success": True})

    def reports(self, phones: list[str]) -> list[dict[str, Any]]:
        """Status reports for the settled messages to these numbers."""
        out = []
        for phone in phones:
            for s in self.by_phone(phone):
                if s.status == "sent":
                    continue
                at = s.at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
                status = "DELIVRD" if s.status == "delivered" else (s.code or "CM:0001")
                out.append({"reportStatus": status, "mobile": phone_key(s.phone), "submitDate": at, "receiveDate": at,
                            "errorCode": status, "msgGroup": s.provider_id})
        return out

    def push(self, url: str, phones: list[str], *, b64: bool = False) -> httpx.Response:
        """POST the reports (a JSON array, or Base64 of it) to ``url`` (…/cmas)."""
        data = json.dumps(self.reports(phones), ensure_ascii=False).encode()
        return httpx.post(url, content=base64.b64encode(data) if b64 else data,
                          headers={"Content-Type": "application/json;charset=UTF-8"}, timeout=10)

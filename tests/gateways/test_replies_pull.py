"""Reply pulls (``fetch_inbound``) against the mocked provider APIs of test_tencent / test_twilio
(Tencent's fake re-derives the TC3 signature; Twilio's checks basic auth), and the blacklist
refusals as the send path reports them (``SendResult.blocked``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from broadcast.gateways.base import Outcome, SendItem
from tests.gateways import test_tencent as tc
from tests.gateways import test_twilio as tw

# tccli/examples/sms/v20210111/PullSmsReplyStatus.md (TencentCloud/tencentcloud-cli)
TENCENT_ROWS = [
    {"CountryCode": "86", "ReplyContent": "1", "SubscriberNumber": "15291990000", "ExtendCode": "11",
     "ReplyTime": 1620734188, "PhoneNumber": "+8615291990000", "SignName": "腾讯云"},
    {"CountryCode": "86", "ReplyContent": "2", "SubscriberNumber": "15291990001", "ExtendCode": "11",
     "ReplyTime": 1620734189, "PhoneNumber": "+8615291990001", "SignName": "腾讯云"},
]


def test_tencent_pull_reads_the_documented_answer() -> None:
    calls: list[dict[str, Any]] = []

    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        assert action == "PullSmsReplyStatus"
        calls.append(body)
        return httpx.Response(200, json={"Response": {"PullSmsReplyStatusSet": TENCENT_ROWS, "RequestId": "r"}})

    gw = tc.gateway(handler)
    assert type(gw).pulls_inbound()
    first, second = tc.run(lambda g: g.fetch_inbound(datetime(2021, 5, 1, tzinfo=UTC)), gw)
    assert calls == [{"SmsSdkAppId": "1400006666", "Limit": 100}]  # fewer than 100 rows: the queue is empty
    assert (first.gateway, first.provider_id, first.phone, first.text, first.extension) == ("tencent", None, "+8615291990000", "1", "11")
    assert first.at == datetime.fromtimestamp(1620734188, UTC) and second.phone == "+8615291990001"
    assert b'"ReplyContent": "1"' in first.raw


def test_tencent_pull_pages_until_the_queue_is_drained() -> None:
    pages = [[dict(TENCENT_ROWS[0], ReplyContent=str(i)) for i in range(100)], TENCENT_ROWS[:1]]

    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"Response": {"PullSmsReplyStatusSet": pages.pop(0), "RequestId": "r"}})

    got = tc.run(lambda g: g.fetch_inbound(datetime(2021, 5, 1, tzinfo=UTC)), tc.gateway(handler))
    assert len(got) == 101 and pages == []


def test_tencent_pull_error_is_raised_not_hidden() -> None:
    with pytest.raises(LookupError, match="FailedOperation"):
        tc.run(lambda g: g.fetch_inbound(datetime(2021, 5, 1, tzinfo=UTC)),
               tc.gateway(tc.error("FailedOperation.PermissionDenied", "pull not enabled")))


def test_twilio_pull_lists_inbound_messages_since() -> None:
    seen: list[httpx.Request] = []
    page1 = {"messages": [
        {"sid": "SMin1", "direction": "inbound", "from": "+8613812345678", "to": "+15005550006", "body": "TD",
         "date_sent": "Sun, 01 Mar 2026 02:00:00 +0000"},
        {"sid": "SMout", "direction": "outbound-api", "from": "+15005550006", "to": "+8613812345678", "body": "早上好",
         "date_sent": "Sun, 01 Mar 2026 01:00:00 +0000"},
        {"sid": "SMold", "direction": "inbound", "from": "+8613812345678", "to": "+15005550006", "body": "old",
         "date_sent": "Sun, 01 Mar 2026 00:10:00 +0000"},
    ], "next_page_uri": f"/2010-04-01/Accounts/{tw.SID}/Messages.json?PageToken=PA2&PageSize=100"}
    page2 = {"messages": [{"sid": "SMin2", "direction": "inbound", "from": "+8613900001111", "to": "+15005550006",
                           "body": "收到", "date_sent": "Sun, 01 Mar 2026 03:00:00 +0000"}], "next_page_uri": None}

    def handler(request: httpx.Request, form: dict[str, str]) -> httpx.Response:
        assert request.method == "GET" and request.url.path.endswith("/Messages.json")
        return httpx.Response(200, json=page2 if form.get("PageToken") == "PA2" else page1)

    gw = tw.gateway(handler, seen)
    a, b = tw.run(lambda g: g.fetch_inbound(datetime(2026, 3, 1, 1, 0, tzinfo=UTC)), gw)
    assert dict(seen[0].url.params) == {"DateSent>": "2026-03-01", "PageSize": "100", "To": "+15005550006"}
    assert dict(seen[1].url.params) == {"PageToken": "PA2", "PageSize": "100"}
    assert (a.provider_id, a.phone, a.to, a.text, a.at) == ("SMin1", "+8613812345678", "+15005550006", "TD",
                                                            datetime(2026, 3, 1, 2, 0, tzinfo=UTC))
    assert (b.provider_id, b.text) == ("SMin2", "收到")


def test_twilio_pull_error_is_raised() -> None:
    with pytest.raises(LookupError, match="HTTP 500"):
        tw.run(lambda g: g.fetch_inbound(datetime(2026, 3, 1, tzinfo=UTC)), tw.gateway(tw.fail(500, 20500)))


# -- blacklist refusals on the send path ----------------------------------------------------------------


def test_tencent_send_reports_a_blacklisted_number_as_blocked() -> None:
    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        rows = [{"SerialNo": "s" + p[-4:], "PhoneNumber": p, "Fee": 1, "SessionContext": "", "IsoCode": "CN",
                 "Code": "FailedOperation.PhoneNumberInBlacklist" if p.endswith("2") else "Ok", "Message": "m"}
                for p in body["PhoneNumberSet"]]
        return httpx.Response(200, json={"Response": {"SendStatusSet": rows, "RequestId": "r"}})

    ok, blocked = tc.run_send(tc.gateway(handler), [SendItem(1, "+8613800000001", "早"), SendItem(2, "+8613800000002", "早")])
    assert ok.outcome is Outcome.ACCEPTED and not ok.blocked
    assert (blocked.outcome, blocked.recipient_fault, blocked.blocked) == (Outcome.PERMANENT, True, True)


def test_tencent_request_level_blacklist_bisects_and_blocks_only_that_number() -> None:
    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        if "+8613800000002" in body["PhoneNumberSet"]:
            return tc.error("FailedOperation.PhoneNumberInBlacklist")(action, body)
        return tc.ok(action, body)

    results = tc.run_send(tc.gateway(handler), tc.same_text(4))
    assert [r.blocked for r in results] == [False, False, True, False]
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.PERMANENT, Outcome.ACCEPTED]


def test_twilio_unsubscribed_is_blocked_other_refusals_are_not() -> None:
    unsubscribed = tw.one(tw.fail(400, 21610))
    assert (unsubscribed.outcome, unsubscribed.recipient_fault, unsubscribed.blocked) == (Outcome.PERMANENT, True, True)
    invalid = tw.one(tw.fail(400, 21211))
    assert (invalid.recipient_fault, invalid.blocked) == (True, False)

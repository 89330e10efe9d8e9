"""Signing against the providers' own published worked examples (exact inputs, exact expected values)."""

from __future__ import annotations

import hashlib

from broadcast.gateways.signing import (
    aliyun_canonical_query,
    aliyun_percent_encode,
    aliyun_rpc_signature,
    aliyun_string_to_sign,
    tc3_authorization,
    tc3_signature,
    twilio_signature,
    validate_twilio_signature,
)

# -- Alibaba Cloud RPC signature V1 ------------------------------------------------------------

ALIYUN_SMS_EXAMPLE = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}


def test_aliyun_sms_doc_example() -> None:
    """Aliyun SMS "HTTP协议及签名" worked example (SendSms, AccessKeySecret ``testSecret`` — capital S,
    GET): https://help.aliyun.com/document_detail/56189.html (also reproduced on
    https://help.aliyun.com/document_detail/101343.htm). The doc prints the StringToSign and
    ``Signature=zJDF+Lrzhj/ThnlvIToysFRq6t4=``."""
    sts = aliyun_string_to_sign(ALIYUN_SMS_EXAMPLE, "GET")
    assert sts == (
        "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D15300000001"
        "%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF"
        "%25A1%25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0%26TemplateCode%3DSMS_71390007"
        "%26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D%26Timestamp%3D2017-07-12T02%253A42%253A19Z"
        "%26Version%3D2017-05-25"
    )
    assert aliyun_rpc_signature(ALIYUN_SMS_EXAMPLE, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert aliyun_percent_encode("zJDF+Lrzhj/ThnlvIToysFRq6t4=") == "zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D"
    # the Signature parameter itself is never signed
    assert aliyun_rpc_signature({**ALIYUN_SMS_EXAMPLE, "Signature": "x"}, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_rpc_doc_example() -> None:
    """Alibaba Cloud RPC signature doc example (ECS DescribeRegions, ``testid``/``testsecret``, GET) →
    ``OLeaidS1JvxuMvnyHOwuJ+uX5qY=``, the example of Alibaba Cloud's RPC "签名机制 / Request signatures"
    page (ECS API reference; unsigned URL ``http://ecs.aliyuncs.com/?Timestamp=2016-02-23T12:46:24Z&Format=XML&
    AccessKeyId=testid&Action=DescribeRegions&…``, key ``testsecret&``). Read in a verbatim copy of that page;
    the page's URL (help.aliyun.com ECS "签名机制") was not re-checked."""
    params = {
        "Timestamp": "2016-02-23T12:46:24Z",
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Version": "2014-05-26",
        "SignatureVersion": "1.0",
    }
    assert aliyun_rpc_signature(params, "testsecret", "GET") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_percent_encoding_rules() -> None:
    """The documented POP rules: RFC 3986 unreserved stay, space %20, * %2A, ~ literal, UTF-8, uppercase hex."""
    assert aliyun_percent_encode("a b*c~d") == "a%20b%2Ac~d"
    assert aliyun_percent_encode("+/=&:") == "%2B%2F%3D%26%3A"
    assert aliyun_percent_encode("派") == "%E6%B4%BE"
    assert aliyun_canonical_query({"b": "2", "B": "1", "a": "x y"}) == "B=1&a=x%20y&b=2"  # byte order: uppercase first
    assert aliyun_string_to_sign({"a": "1"}, "post").startswith("POST&%2F&")


# -- Tencent Cloud TC3-HMAC-SHA256 -------------------------------------------------------------

TC3_PAYLOAD = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'


def test_tc3_doc_example() -> None:
    """Tencent Cloud "签名方法 v3" worked example (CVM DescribeInstances, ts 1551113065, POST,
    ``content-type: application/json; charset=utf-8``, signed headers ``content-type;host``,
    SecretKey ``Gu5t9xGARNpq86cd98joQYCN3EXAMPLE``), as printed in the SMS API docs' signature page
    https://cloud.tencent.com/document/api/382/52072 and every product's "Signature v3" page (e.g. CVM's).
    This is the revision whose SignedHeaders are
    ``content-type;host``; the doc gives HashedRequestPayload ``35e9c5b0…f064``, HashedCanonicalRequest
    ``5ffe6a04…7031`` and ``Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168``."""
    assert hashlib.sha256(TC3_PAYLOAD).hexdigest() == "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    canonical_request = (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n"
        "content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert hashlib.sha256(canonical_request.encode()).hexdigest() == "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    string_to_sign = "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    expected = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    assert tc3_signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "2019-02-25", "cvm", string_to_sign) == expected
    authorization = tc3_authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        content_type="application/json; charset=utf-8",
        payload=TC3_PAYLOAD,
        timestamp=1551113065,
    )
    assert authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={expected}"
    )


def test_tc3_date_is_the_utc_date() -> None:
    """1551113065 is 2019-02-26 00:44:25 in Beijing but 2019-02-25 in UTC: the scope must say 02-25."""
    auth = tc3_authorization("id", "key", service="sms", host="h", content_type="application/json", payload=b"{}", timestamp=1551113065)
    assert "/2019-02-25/sms/tc3_request" in auth


def test_tc3_extra_headers_are_signed_lowercase() -> None:
    a = tc3_authorization("id", "key", service="sms", host="h", content_type="application/json", payload=b"{}",
                          timestamp=1551113065, extra_headers={"X-TC-Action": "SendSms"})
    b = tc3_authorization("id", "key", service="sms", host="h", content_type="application/json", payload=b"{}",
                          timestamp=1551113065, extra_headers={"x-tc-action": "sendsms"})
    assert "SignedHeaders=content-type;host;x-tc-action," in a and a == b


# -- Twilio X-Twilio-Signature -----------------------------------------------------------------

TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}


def test_twilio_sdk_example() -> None:
    """twilio-python's own test vector: tests/unit/test_request_validator.py in
    https://github.com/twilio/twilio-python (token ``12345``, URL ``https://mycompany.com/myapp.php?foo=1&bar=2``)
    → ``RSOYDt4T1cUTdK1PDd93/VVr8B8=``; repeated keys (Sid, SidAccount, Digits×2) → ``IK+Dwps556ElfBT0I3Rgjkr1wJU=``."""
    assert twilio_signature(TWILIO_URL, TWILIO_PARAMS, "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert validate_twilio_signature(TWILIO_URL, TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "12345")
    duplicates = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert twilio_signature(TWILIO_URL, duplicates, "12345") == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_twilio_sdk_port_variants() -> None:
    """Same SDK test file: a port in the URL is tried removed, and the default port tried added."""
    assert validate_twilio_signature(TWILIO_URL.replace(".com", ".com:1234"), TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "12345")
    http_port = TWILIO_URL.replace(".com", ".com:1234").replace("https", "http")
    assert validate_twilio_signature(http_port, TWILIO_PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", "12345")
    assert validate_twilio_signature(TWILIO_URL, TWILIO_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=", "12345")  # :443
    assert validate_twilio_signature(TWILIO_URL.replace("https", "http"), TWILIO_PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4=", "12345")


def test_twilio_sdk_json_body_example() -> None:
    """Same SDK test file: a JSON body signed through ``bodySHA256`` in the URL → ``a9nBmqA0ju/hNViExpshrM61xv4=``."""
    body = '{"property": "value", "boolean": true}'
    body_hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert hashlib.sha256(body.encode()).hexdigest() == body_hash
    url = TWILIO_URL + "&bodySHA256=" + body_hash
    assert validate_twilio_signature(url, body, "a9nBmqA0ju/hNViExpshrM61xv4=", "12345")
    assert not validate_twilio_signature(url, body + " ", "a9nBmqA0ju/hNViExpshrM61xv4=", "12345")


def test_twilio_rejects_tampering() -> None:
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not validate_twilio_signature(TWILIO_URL, {**TWILIO_PARAMS, "Digits": "9"}, good, "12345")
    assert not validate_twilio_signature(TWILIO_URL, TWILIO_PARAMS, good, "54321")
    assert not validate_twilio_signature(TWILIO_URL + "&x=1", TWILIO_PARAMS, good, "12345")
    assert not validate_twilio_signature(TWILIO_URL, TWILIO_PARAMS, "", "12345")
    assert not validate_twilio_signature(TWILIO_URL, TWILIO_PARAMS, good, "")


# -- group-chat robots: worked examples computed here with plain hmac/hashlib -------------------------


def _dingtalk_by_hand(secret: str, timestamp_ms: int) -> str:
    import base64
    import hashlib
    import hmac
    import urllib.parse

    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, digestmod=hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def _feishu_by_hand(secret: str, timestamp_s: int) -> str:
    import base64
    import hashlib
    import hmac

    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode()


def test_dingtalk_robot_sign_matches_the_documented_formula() -> None:
    from broadcast.gateways.signing import dingtalk_robot_sign

    # computed independently (research notes, channels-and-inbound.md §3) and by hand here
    assert _dingtalk_by_hand("SECxxxx_example", 1577262236757) == "vVhM9vM8Mxne%2FWrjJE5bEYxjXW9MQrf4qKMNNcyKh98%3D"
    assert dingtalk_robot_sign("SECxxxx_example", 1577262236757) == "vVhM9vM8Mxne%2FWrjJE5bEYxjXW9MQrf4qKMNNcyKh98%3D"
    for secret, ts in [("SEC5a3ecf88f2b3eb50db30ecfc00f53033ac909c99bf7f88fd612bda89d7f3a9dc", 1780000000123),
                       ("this is secret", 1), ("SEC中文+/=", 1599999999999)]:
        assert dingtalk_robot_sign(secret, ts) == _dingtalk_by_hand(secret, ts)


def test_feishu_robot_sign_matches_the_documented_formula() -> None:
    from broadcast.gateways.signing import dingtalk_robot_sign, feishu_robot_sign

    assert _feishu_by_hand("test-secret", 1599360473) == "wSds2BzzFIIGf/WrhUO+NI1q/9j+FRJd3JNHKAq0NZY="
    assert feishu_robot_sign("test-secret", 1599360473) == "wSds2BzzFIIGf/WrhUO+NI1q/9j+FRJd3JNHKAq0NZY="
    for secret, ts in [("nIMtb7r3N9pkXyXdtAbx6e", 1780000000), ("", 0), ("密钥", 1599360473)]:
        assert feishu_robot_sign(secret, ts) == _feishu_by_hand(secret, ts)
    # the key and the message are the other way round from DingTalk's: not the same MAC
    assert feishu_robot_sign("s3cret", 1000) != dingtalk_robot_sign("s3cret", 1000)

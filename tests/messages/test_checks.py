"""Tests for broadcast.messages.checks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast.messages.checks import CheckReport, CheckWarning, check_text

SIG = "城南新区"
CLEAN = "各位党员同志：请于11月27日（星期五）下午3点到区委会议室参加学习。"


def codes(body: str, **kw: object) -> list[str]:
    return [w.code for w in check_text(body, **kw).warnings]  # type: ignore[arg-type]


def only(body: str, code: str, **kw: object) -> list[CheckWarning]:
    return [w for w in check_text(body, **kw).warnings if w.code == code]  # type: ignore[arg-type]


def test_clean_notice_has_no_warnings() -> None:
    report = check_text(CLEAN, signature=SIG)
    assert report.warnings == []
    assert report.text == "【城南新区】" + CLEAN
    assert (report.length, report.encoding, report.parts) == (len(CLEAN) + 6, "UCS-2", 1)


# --- signature / report --------------------------------------------------------

@pytest.mark.parametrize("sig", ["城南新区", "【城南新区】", " 城南新区 ", "【城南新区", "城南新区】"])
def test_signature_wrapped_once(sig: str) -> None:
    assert check_text("你好", signature=sig).text == "【城南新区】你好"


@pytest.mark.parametrize("sig", ["", "  ", "【】"])
def test_blank_signature_is_omitted(sig: str) -> None:
    assert check_text("hello", signature=sig).text == "hello"


def test_signature_counts_toward_length_and_parts() -> None:
    body = "中" * 154
    assert check_text(body).parts == 3
    report = check_text(body, signature=SIG)
    assert (report.length, report.parts) == (160, 3)
    assert check_text("中" * 64, signature=SIG).parts == 1  # 70
    assert check_text("中" * 65, signature=SIG).parts == 2  # 71
    # a signed English text is UCS-2 because of 【】
    assert check_text("a" * 100, signature="Town").encoding == "UCS-2"
    assert check_text("a" * 100).encoding == "GSM-7"


def test_to_dict_shape_and_json() -> None:
    report = check_text(" x", signature=SIG)
    d = report.to_dict()
    assert set(d) == {"length", "encoding", "parts", "warnings", "text"}
    assert d["warnings"] == [{"code": "whitespace", "message": report.warnings[0].message}]
    assert json.loads(json.dumps(d, ensure_ascii=False)) == d
    assert report.codes == ["whitespace"]
    assert isinstance(report, CheckReport)


def test_messages_are_one_line_sentences() -> None:
    body = " {x} 【a】 http://e.cn 拒收请回复R \u200b" + "中" * 600 + " "
    report = check_text(body, banned_words=["中"], max_parts=1)
    assert len(report.warnings) >= 8
    for w in report.warnings:
        assert "\n" not in w.message and w.message.endswith(".")


# --- each code -------------------------------------------------------------------

def test_too_many_parts() -> None:
    assert "too_many_parts" not in codes("中" * 201)  # 201 = 3 parts
    w = only("中" * 202, "too_many_parts")
    assert len(w) == 1 and "4 parts" in w[0].message and "3" in w[0].message
    assert "too_many_parts" in codes("中" * 71, max_parts=1)
    assert "too_many_parts" not in codes("中" * 70, max_parts=1)


def test_too_long() -> None:
    assert "too_long" not in codes("中" * 494, signature=SIG, max_parts=99)  # 500
    w = only("中" * 495, "too_long", signature=SIG, max_parts=99)  # 501
    assert len(w) == 1 and "501" in w[0].message and "500" in w[0].message


@pytest.mark.parametrize("body", ["【通知】开会", "开会】", "【开会"])
def test_brackets_in_body(body: str) -> None:
    assert "brackets_in_body" in codes(body, signature=SIG)


def test_brackets_in_signature_only_is_fine() -> None:
    assert "brackets_in_body" not in codes("开会[1]", signature="【城南新区】")


@pytest.mark.parametrize(
    ("body", "url"),
    [("详见http://example.com/a", "http://example.com/a"),
     ("详见 https://www.gov.cn/x?id=1。", "https://www.gov.cn/x?id=1"),
     ("访问www.baidu.com了解", "www.baidu.com"),
     ("访问example.com/x了解", "example.com/x"),
     ("访问example.com了解详情", "example.com"),
     ("see foo.bar/x now", "foo.bar/x"),
     ("登录cnzx.gov.cn。", "cnzx.gov.cn"),
     ("HTTPS://EXAMPLE.COM", "HTTPS://EXAMPLE.COM")],
)
def test_url_detected(body: str, url: str) -> None:
    w = only(body, "url")
    assert len(w) == 1 and url in w[0].message


@pytest.mark.parametrize(
    "body",
    ["请于3.5小时内", "e.g. 开会", "Dr.Wang 发言", "No.5 会议室", "邮件 a@example.com",
     "file.txt", "example.community", "比分2:1", "10.00元"],
)
def test_url_not_detected(body: str) -> None:
    assert "url" not in codes(body)


def test_url_each_distinct_once() -> None:
    assert len(only("a.com b.com a.com", "url")) == 2


@pytest.mark.parametrize(
    "suffix",
    ["拒收请回复R", "拒收请回复r", "回T退订", "回t退订", "回TD退订", "回复TD退订", "退订回T",
     "回N退订", "Reply STOP to opt out", "reply stop"],
)
def test_marketing_with_unsubscribe_ok(suffix: str) -> None:
    assert "missing_unsubscribe" not in codes("本周活动报名。" + suffix, category="marketing")


def test_marketing_without_unsubscribe() -> None:
    assert codes("本周活动报名。", category="marketing", signature=SIG) == ["missing_unsubscribe"]
    assert "missing_unsubscribe" in codes("回复T了解详情", category="marketing")


def test_unsubscribe_only_required_for_marketing() -> None:
    assert "missing_unsubscribe" not in codes("开会", category="notice")
    assert "missing_unsubscribe" not in codes("验证码123456", category="verification")


def test_unsubscribe_in_notice() -> None:
    assert "unsubscribe_in_notice" in codes("开会。拒收请回复R")
    assert "unsubscribe_in_notice" in codes("开会。拒收请回复r", category="通知")
    assert "unsubscribe_in_notice" not in codes("开会。拒收请回复R", category="marketing")
    assert "unsubscribe_in_notice" not in codes("开会。回T退订", category="notice")
    assert "unsubscribe_in_notice" not in codes("开会。")


def test_category_aliases_and_unknown() -> None:
    assert "missing_unsubscribe" in codes("活动", category="推广")
    assert "missing_unsubscribe" in codes("活动", category=" Marketing ")
    with pytest.raises(ValueError, match="unknown category 'promo'"):
        check_text("活动", category="promo")


def test_banned_words() -> None:
    ws = only("这是一条测试短信，内容涉及党政。", "banned_word", banned_words=["党政", "测试", "无关", ""])
    assert [w.message for w in ws] == [
        "The text contains the banned word '党政'.", "The text contains the banned word '测试'."]
    assert "banned_word" not in codes(CLEAN, banned_words=["党政"])
    assert len(only("FREE gift", "banned_word", banned_words=["free", "Free"])) == 1
    assert len(only("ＦＲＥＥ", "banned_word", banned_words=["free"])) == 1  # full-width
    assert len(only("党\u200b政", "banned_word", banned_words=["党政"])) == 1  # zero-width evasion


@pytest.mark.parametrize(("body", "where"), [(" 开会", "leading"), ("开会\n", "trailing"),
                                             ("\t开会 ", "leading and trailing"),
                                             ("\u3000开会", "leading")])
def test_whitespace(body: str, where: str) -> None:
    w = only(body, "whitespace")
    assert len(w) == 1 and f"{where} whitespace" in w[0].message


def test_inner_whitespace_is_fine() -> None:
    assert codes("开会 时间\n地点", signature=SIG) == []


@pytest.mark.parametrize(
    ("ch", "code"),
    [("\u200b", "U+200B"), ("\u200c", "U+200C"), ("\u200d", "U+200D"), ("\u2060", "U+2060"),
     ("\ufeff", "U+FEFF"), ("\u00a0", "U+00A0"), ("\u00ad", "U+00AD"), ("\u202e", "U+202E"),
     ("\u3000", "U+3000"), ("\u2009", "U+2009"), ("\u2028", "U+2028"), ("\t", "U+0009"),
     ("\r", "U+000D"), ("\x00", "U+0000")],
)
def test_invisible_char(ch: str, code: str) -> None:
    w = only("开会" + ch + "地点", "invisible_char")
    assert len(w) == 1
    assert code in w[0].message and "position 3" in w[0].message


def test_invisible_char_each_occurrence_positions_in_body() -> None:
    w = only("\u200ba\u200bb", "invisible_char", signature=SIG)
    assert [m.message.split("position ")[1] for m in w] == ["1.", "3."]


def test_visible_text_has_no_invisible_warning() -> None:
    assert "invisible_char" not in codes("Hello 世界！😀 €{}\n第二行")


@pytest.mark.parametrize("body", ["", " ", "\n\t "])
def test_empty(body: str) -> None:
    assert "empty" in codes(body, signature=SIG)


def test_not_empty() -> None:
    assert "empty" not in codes("a")


@pytest.mark.parametrize(("body", "token"), [("{name}同志", "{name}"), ("${name}同志", "${name}"),
                                              ("第{1}支部", "{1}"), ("{}", "{}")])
def test_placeholder(body: str, token: str) -> None:
    w = only(body, "placeholder")
    assert len(w) == 1 and token in w[0].message


@pytest.mark.parametrize("body", ["张三同志", "a { b", "$5 } c"])
def test_no_placeholder(body: str) -> None:
    assert "placeholder" not in codes(body)


# --- properties ----------------------------------------------------------------

@settings(max_examples=300)
@given(st.text(max_size=700), st.text(max_size=15),
       st.sampled_from(["notice", "marketing", "verification"]),
       st.lists(st.text(max_size=5), max_size=3), st.integers(1, 10))
def test_property_never_raises(body: str, sig: str, cat: str, banned: list[str], max_parts: int) -> None:
    report = check_text(body, signature=sig, category=cat, banned_words=banned, max_parts=max_parts)
    assert report.text.endswith(body)
    assert report.length == len(report.text)
    assert ("too_many_parts" in report.codes) == (report.parts > max_parts)
    assert ("empty" in report.codes) == (not body.strip())
    json.dumps(report.to_dict())


def test_check_message_renders_for_today_and_checks_with_the_settings(monkeypatch) -> None:
    from broadcast.config import load_settings
    from broadcast.messages.checks import check_message

    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T08:00")
    monkeypatch.setenv("BROADCAST_SIGNATURE", "城南新区")
    monkeypatch.setenv("BROADCAST_BANNED_WORDS", "彩票")
    report = check_message(load_settings(), text="{date}买彩票", category="营销")
    assert report.text == "【城南新区】11月27日买彩票"
    assert report.codes == ["missing_unsubscribe", "banned_word"]


@pytest.mark.parametrize("kw", [{}, {"text": "x", "template": "y"}, {"text": "x", "category": "spam"},
                                {"text": "{nosuch}"}])
def test_check_message_bad_input_is_an_input_error(kw: dict[str, str]) -> None:
    from broadcast.config import load_settings
    from broadcast.errors import InputError
    from broadcast.messages.checks import check_message

    with pytest.raises(InputError):
        check_message(load_settings(), **kw)

"""Tests for broadcast.recipients.phones: mainland fast path, Excel mangling, phonenumbers fallback."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast.recipients.phones import PhoneResult, mask_phone, normalize_phone

E164 = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)
MOBILE = "+8613805141234"

VALID: list[tuple[object, str]] = [
    ("13805141234", MOBILE),
    ("138 0514 1234", MOBILE),
    ("138-0514-1234", MOBILE),
    ("138.0514.1234", MOBILE),
    ("(138)0514-1234", MOBILE),
    ("+86-138-0514-1234", MOBILE),
    ("+86 13805141234", MOBILE),
    ("(+86) 138 0514 1234", MOBILE),
    ("+8613805141234", MOBILE),
    ("0086 13805141234", MOBILE),
    ("008613805141234", MOBILE),
    ("8613805141234", MOBILE),
    ("86 138 0514 1234", MOBILE),
    ("１３８０５１４１２３４", MOBILE),  # full-width digits
    ("＋８６　１３８－０５１４－１２３４", MOBILE),  # full-width +, dash, ideographic space
    ("138０5141234", MOBILE),  # one stray full-width digit
    ("138—0514–1234", MOBILE),  # em and en dashes
    ("13805141234.0", MOBILE),  # CSV written from an Excel float
    ("13805141234.00", MOBILE),
    ("'13805141234", MOBILE),  # Excel's text marker
    ('"13805141234"', MOBILE),
    ("“13805141234”", MOBILE),
    ("'  13805141234  '", MOBILE),
    ("1380\u200b5141234", MOBILE),  # zero-width space
    ("\ufeff13805141234\u200d", MOBILE),  # BOM, zero-width joiner
    ("\u206013805141234\u200c", MOBILE),  # word joiner, zero-width non-joiner
    ("\u00a013805141234\u00a0", MOBILE),  # NBSP
    ("138\u00a00514\u00a01234", MOBILE),
    ("\t13805141234\n", MOBILE),
    ("13805141234,", MOBILE),  # stray list separator at the end
    ("013805141234", MOBILE),  # spurious trunk 0 before a mobile
    ("19912345678", "+8619912345678"),
    ("17012345678", "+8617012345678"),
    (13805141234, MOBILE),
    (8613805141234, MOBILE),
    (13805141234.0, MOBILE),
    (Decimal(13805141234), MOBILE),
    (b"13805141234", MOBILE),
    (bytearray(b"+86 138 0514 1234"), MOBILE),
    ("+44 20 7946 0958", "+442079460958"),  # UK landline: valid for phonenumbers
    ("0044 20 7946 0958", "+442079460958"),
    ("+44 (0)20 7946 0958", "+442079460958"),
    ("+1 650 253 0000", "+16502530000"),
    ("+1 (650) 253-0000", "+16502530000"),
    ("+852 6123 4567", "+85261234567"),
]

INVALID: list[tuple[object, str]] = [
    (None, "empty"),
    ("", "empty"),
    ("   ", "empty"),
    ("\u00a0\u3000", "empty"),
    ("\u200b", "empty"),
    ("''", "empty"),
    (b"", "empty"),
    (True, "not a phone number"),
    (False, "not a phone number"),
    (math.nan, "NaN"),
    (math.inf, "infinite"),
    (-math.inf, "infinite"),
    (1.5, "not a whole number"),
    (13805141234.5, "not a whole number"),
    (-13805141234, "negative"),
    (10**30, "too long"),
    (1e300, "too long"),
    (object(), "unsupported value of type object"),
    ([13805141234], "unsupported value of type list"),
    (b"\xff\xfe", "not UTF-8"),
    ("1.38051E+10", "scientific notation (1.38051E+10)"),
    ("1.38051e10", "scientific notation"),
    ("1.3805141234E+10", "scientific notation"),  # all 11 digits, still ambiguous
    ("1,38051E+10", "scientific notation"),
    ("'1.38051E+10", "scientific notation"),
    ("１.３８０５１Ｅ＋１０", "scientific notation"),
    ("138-0514-1234/139-0514-1234", "more than one number"),
    ("13805141234,13905141234", "more than one number"),
    ("13805141234；13905141234", "more than one number"),
    ("13805141234、13905141234", "more than one number"),
    ("13805141234，13905141234", "more than one number"),
    ("13805141234 | 13905141234", "more than one number"),
    ("13805141234\n13905141234", "more than one number"),
    ("0514-84683100", "landline"),
    ("0514 8468 3100", "landline"),
    ("(0514)84683100", "landline"),
    ("0514/84683100", "landline"),  # a lone '/' between area code and number
    ("010-12345678", "landline"),
    ("020-1234567", "landline"),
    ("+86 514 8468 3100", "landline"),
    ("+86 10 1234 5678", "landline"),
    ("+86 0514 84683100", "landline"),
    ("0086 514 84683100", "landline"),
    ("84683100", "landline"),
    ("8468310", "landline"),
    (84683100, "landline"),
    ("1380514123", "too short (10 digits; a mainland mobile has 11)"),
    ("138 0514", "too short (7 digits"),
    ("0514", "too short (4 digits"),
    ("+86", "too short (0 digits"),
    ("138051412345", "too long (12 digits; a mainland mobile has 11)"),
    ("1380514123456789", "too long (16 digits"),
    ("12345678901", "not a mainland mobile number (must start with 13–19)"),
    ("10012345678", "not a mainland mobile number"),
    ("+86 11012345678", "not a mainland mobile number"),
    ("abc", "not a phone number ('abc')"),
    ("Tel: 13805141234", "not a phone number"),
    ("138051412３4x", "not a phone number"),
    ("+", "not a phone number"),
    ("++8613805141234", "not a phone number"),
    ("138+05141234", "not a phone number"),
    ("#N/A", "not a phone number"),
    ("٣٨٠٥١٤١٢٣٤١", "not a phone number"),  # Arabic-Indic digits are not accepted
    ("+44 7700 900123", "not a valid number for +44"),  # Ofcom drama range
    ("+1 555 0100", "not a valid number for +1"),
    ("+999 123", "unknown country code ('+999 123')"),
    ("00", "not a valid international number"),
    ("+0 123 4567", "not a valid international number"),
    ("+44 12345678901234", "too long (16 digits; an international number has at most 15)"),
]


@pytest.mark.parametrize(("value", "expected"), VALID, ids=repr)
def test_valid_numbers(value: object, expected: str) -> None:
    assert normalize_phone(value) == PhoneResult(expected, None)


@pytest.mark.parametrize(("value", "fragment"), INVALID,
                         ids=lambda v: "object()" if type(v) is object else repr(v))  # stable ids: the same in every xdist worker
def test_invalid_numbers(value: object, fragment: str) -> None:
    result = normalize_phone(value)
    assert result.e164 is None
    assert result.reason is not None
    assert fragment in result.reason
    assert "\n" not in result.reason and "\r" not in result.reason
    assert "Traceback" not in result.reason


def test_scientific_notation_reason_tells_the_user_what_to_do() -> None:
    reason = normalize_phone("1.38051E+10").reason
    assert reason == (
        "scientific notation (1.38051E+10): Excel dropped the digits; "
        "format the column as text and export again"
    )


def test_reason_quotes_and_shortens_long_input_on_one_line() -> None:
    reason = normalize_phone("x" * 500 + "\u2028\n").reason
    assert reason is not None and len(reason) < 120 and reason.isprintable()


def test_exact_common_reasons() -> None:
    assert normalize_phone(None).reason == "empty"
    assert normalize_phone("0514-84683100").reason == (
        "landline number: SMS needs a mobile number ('0514-84683100')"
    )


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("020 7946 0958", "GB", "+442079460958"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("+8613805141234", "GB", MOBILE),
        ("00 86 138 0514 1234", "GB", MOBILE),
        ("13805141234", "cn", MOBILE),
    ],
)
def test_other_default_region(value: str, region: str, expected: str) -> None:
    assert normalize_phone(value, region) == PhoneResult(expected, None)


@pytest.mark.parametrize(
    ("value", "region", "fragment"),
    [
        ("00 86 514 8468 3100", "GB", "landline"),
        ("13805141234", "XX", "not a valid number"),
        ("020 7946 0958", "US", "not a valid number"),
    ],
)
def test_other_default_region_rejects(value: str, region: str, fragment: str) -> None:
    result = normalize_phone(value, region)
    assert result.e164 is None and result.reason is not None and fragment in result.reason


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+8613805141234", "138****1234"),
        ("+442079460958", "+4420****0958"),
        ("+16502530000", "+165****0000"),
        ("+85261234567", "+85261**4567"),
        ("+6834002", "+683**02"),
        ("not a number", "****"),
        ("", "****"),
    ],
)
def test_mask_phone(e164: str, masked: str) -> None:
    assert mask_phone(e164) == masked


def test_module_import_does_not_import_phonenumbers() -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; import broadcast.recipients.phones as p; "
        "p.normalize_phone('0514-84683100'); p.normalize_phone('13805141234', ranges=False); "
        "assert 'phonenumbers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def _check_result(result: PhoneResult) -> None:
    assert isinstance(result, PhoneResult)
    assert (result.e164 is None) != (result.reason is None)
    if result.e164 is not None:
        assert E164.match(result.e164), result.e164
        assert normalize_phone(result.e164).e164 == result.e164  # idempotent
    else:
        assert result.reason and result.reason.isprintable() and "Traceback" not in result.reason


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_never_raises_on_any_text(text: str) -> None:
    _check_result(normalize_phone(text))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.binary(),
        st.decimals(),
        st.from_regex(r"\A[+0]?[0-9 ()\-.]{0,20}\Z"),
    )
)
def test_never_raises_on_any_object(value: object) -> None:
    _check_result(normalize_phone(value))


@settings(max_examples=300)
@given(st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z"))
def test_idempotent_on_e164_like_input(text: str) -> None:
    _check_result(normalize_phone(text))


_FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "0123456789+-()"} | {" ": "\u3000"}
# Three-digit mobile prefixes allocated in full (phonenumbers' CN metadata; 154, 140 … are not).
ALLOCATED = [f"13{d}" for d in "0123456789"] + ["145", "147"] + [f"15{d}" for d in "012356789"] + [
    "162", "165", "166", "167"] + [f"17{d}" for d in "01235678"] + [f"18{d}" for d in "0123456789"] + [
    f"19{d}" for d in "012356789"]


@st.composite
def mangled_mobiles(draw: st.DrawFn) -> tuple[str, str]:
    head = draw(st.sampled_from(ALLOCATED))
    tail = draw(st.text("0123456789", min_size=8, max_size=8))
    digits = head + tail
    seps = st.sampled_from(["", "", "", " ", "-", "\u00a0", "–", "—", "\u200b", "  "])
    body = "".join(d + draw(seps) for d in digits[:-1]) + digits[-1]
    prefix = draw(
        st.sampled_from(["", "+86", "+86 ", "+86-", "(+86)", "0086", "0086 ", "86", "86 "])
    )
    text = prefix + body
    if draw(st.booleans()):
        text = "".join(_FULL_WIDTH.get(c, c) for c in text)
    text = draw(st.sampled_from(["", " ", "'", "\u00a0", "\ufeff"])) + text
    text += draw(st.sampled_from(["", " ", "\u00a0", "\u200b", "\n"]))
    return text, "+86" + digits


@settings(max_examples=500)
@given(mangled_mobiles())
def test_mangled_mainland_mobiles_normalise(case: tuple[str, str]) -> None:
    text, expected = case
    assert normalize_phone(text) == PhoneResult(expected, None)


@given(st.sampled_from(ALLOCATED), st.integers(0, 10**8 - 1))
def test_excel_numeric_mobiles(head: str, tail: int) -> None:
    digits = f"{head}{tail:08d}"
    for value in (int(digits), float(digits), f"{digits}.0", f"'{digits}"):
        assert normalize_phone(value) == PhoneResult("+86" + digits, None)

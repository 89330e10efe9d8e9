"""Phone-number normalisation for contact lists exported from Chinese Excel.

``normalize_phone(value)`` never raises: it returns a ``PhoneResult`` holding
either the E.164 form (``'+8613805141234'``) or a one-line English reason.

Rules, in order:

* ``None``, ``''``, whitespace only: "empty".  ``bool``: not a phone number.  ``int``:
  its digits.  ``float`` (Excel's number cells): only integral values, as ``int``.
* Text: NFKC (full-width ``１３８`` and ``＋`` become ASCII), zero-width chars
  (U+200B/C/D, U+2060, U+FEFF) removed, then whitespace (NBSP included), quotes,
  Excel's leading ``'`` and stray list separators are stripped from both ends.
* Scientific notation (``1.38051E+10``) is rejected even with all 11 digits.
* Two or more parts of >= 7 digits split by ``/ , ; 、 ， |`` or a line break:
  "more than one number".
* A trailing ``.0`` after pure digits is removed; then spaces, dashes (ASCII,
  en/em, full-width), dots, ``/`` and brackets.  Anything left but digits and
  one leading ``+``: "not a phone number".
* ``+86``, ``0086``, and ``86`` + 11 digits starting with 1 are mainland;
  ``+CC`` / ``00CC`` with CC != 86 are validated by ``phonenumbers``.
* Mainland: ``1[3-9]`` + 9 digits is a mobile (a spurious trunk ``0`` before
  it, ``013805141234``, is dropped); ``0`` + 9-11 digits, or 7-8 digits
  starting 2-9, are landlines; ``1[012]`` + 9 digits is not a mobile; else too
  short / too long.
* ``default_region`` other than CN: numbers without a country code go through
  ``phonenumbers`` with that region.  ``mask_phone`` hides the middle digits.
* Allocation: a mainland mobile must also lie in a range the installed ``phonenumbers``
  knows as allocated (its metadata follows the ministry's allocations), else it is rejected:
  ``15412345678`` is a typo, not a number any operator issued.  ``extra_prefixes`` (the
  setting ``BROADCAST_EXTRA_MOBILE_PREFIXES``) names ranges allocated after that release:
  their numbers are accepted with a ``warning``.  ``ranges=False`` skips the check, for
  looking up a number that may already be stored.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phonenumbers import PhoneNumber

__all__ = ["PhoneResult", "mask_phone", "normalize_phone"]


@dataclass(frozen=True, slots=True)
class PhoneResult:
    e164: str | None  # '+8613805141234' when valid, else None
    reason: str | None  # None when valid; else a one-line English reason
    warning: str | None = None  # accepted, but only thanks to an extra prefix (one line)


_A = re.ASCII
_FAST = re.compile(r"(?:\+86)?(1[3-9][0-9]{9})", _A)
_MOBILE = re.compile(r"0?(1[3-9][0-9]{9})", _A)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", _A)
_SCI = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+", _A)
_LIST_SEP = re.compile(r"[/,;、，|\t\n\r\v\f\u2028\u2029\x85]")
_NON_DIGIT = re.compile(r"[^0-9]+", _A)
_TRAILING_ZERO = re.compile(r"(\+?[0-9]+)\.0+", _A)
_SEPARATORS = re.compile(r"[-‐‑‒–—―−－.。/()（）\[\]{}]+")
_DIGITS = re.compile(r"\+?[0-9]+", _A)
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_END_JUNK = "'\"`‘’“”„«»「」『』,;|/、，"
_LANDLINE = "landline number: SMS needs a mobile number"


def _bad(reason: str) -> PhoneResult:
    return PhoneResult(None, reason)


def _q(text: str) -> str:
    """Quote user text for a reason: shortened, one line (repr escapes breaks)."""
    return repr(text if len(text) <= 40 else text[:39] + "…")


def normalize_phone(
    value: object, default_region: str = "CN", extra_prefixes: Sequence[str] = (), *, ranges: bool = True
) -> PhoneResult:
    """Normalise one spreadsheet cell to E.164; never raises (see module doc)."""
    try:
        if default_region == "CN":  # fast path: a clean mainland mobile
            if type(value) is float and value.is_integer() and 1e10 <= value < 2e10:
                value = int(value)
            if type(value) is str or type(value) is int:
                m = _FAST.fullmatch(value if type(value) is str else str(value))
                if m and (not ranges or _mobile_ranges().fullmatch(m[1])):
                    return PhoneResult("+86" + m[1], None)
        result = _normalize(value, str(default_region or "CN").upper())
    except Exception as exc:
        return _bad(f"not a phone number (could not be read: {type(exc).__name__})")
    if ranges and result.e164 is not None and result.e164.startswith("+86"):
        return _allocated(result.e164, extra_prefixes)
    return result


@functools.cache
def _mobile_ranges() -> re.Pattern[str]:
    """The allocated mainland mobile ranges: ``phonenumbers``' pattern for CN mobiles."""
    from phonenumbers import PhoneMetadata

    desc = getattr(PhoneMetadata.metadata_for_region("CN"), "mobile", None)
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        raise RuntimeError("phonenumbers has no mobile metadata for CN")
    return re.compile(pattern, _A)


def _allocated(e164: str, extra_prefixes: Sequence[str]) -> PhoneResult:
    """``e164`` is a well-formed +86 mobile; keep it only if its range is allocated."""
    n = e164[3:]
    if _mobile_ranges().fullmatch(n):
        return PhoneResult(e164, None)
    from phonenumbers import __version__ as version

    hit = next((p for p in extra_prefixes if n.startswith(p)), None)
    if hit is not None:
        return PhoneResult(e164, None, f"accepted, but {n} is outside the mobile ranges phonenumbers {version} "
                                       f"knows (BROADCAST_EXTRA_MOBILE_PREFIXES lists {hit})")
    return _bad(f"not in an allocated mainland mobile range ({n}): a typo? A range allocated after "
                f"phonenumbers {version} can be allowed with BROADCAST_EXTRA_MOBILE_PREFIXES")


def _normalize(value: object, region: str) -> PhoneResult:
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return _bad("not a phone number (bytes that are not UTF-8 text)")
    elif isinstance(value, Decimal):
        value = str(value)
    if isinstance(value, str):
        if not value.isascii():
            value = unicodedata.normalize("NFKC", value).translate(_ZERO_WIDTH)
        return _parse_text(value.strip().strip(_END_JUNK).strip(), region)
    if value is None:
        return _bad("empty")
    if isinstance(value, bool):
        return _bad(f"not a phone number (a true/false value: {value})")
    if isinstance(value, numbers.Integral):
        value = int(value)
        if value.bit_length() > 64:  # also keeps str() clear of the 4300-digit limit
            return _bad("too long (more than 19 digits; a mainland mobile has 11)")
        if value < 0:
            return _bad(f"not a phone number (negative: {value})")
        return _parse_text(str(value), region)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return _bad("not a number (NaN): the cell is blank or holds an error")
        if math.isinf(f):
            return _bad(f"not a phone number (infinite value: {f})")
        if not f.is_integer():
            return _bad(f"not a whole number ({f!r}): a phone number has no fraction")
        return _normalize(int(f), region)
    return _bad(f"not a phone number (unsupported value of type {type(value).__name__})")


def _parse_text(text: str, region: str) -> PhoneResult:
    if not text:
        return _bad("empty")
    compact = "".join(text.split())
    if ("e" in compact or "E" in compact) and _SCI.fullmatch(compact):
        return _bad(
            f"scientific notation ({compact}): Excel dropped the digits; "
            "format the column as text and export again"
        )
    parts = _LIST_SEP.split(text)
    if len(parts) > 1 and sum(len(_NON_DIGIT.sub("", p)) >= 7 for p in parts) >= 2:
        return _bad(f"more than one number in one cell ({_q(text)}): put one per row")
    m = _TRAILING_ZERO.fullmatch(compact)
    compact = m[1] if m else _SEPARATORS.sub("", compact)
    if not _DIGITS.fullmatch(compact):
        return _bad(f"not a phone number ({_q(text)})")
    digits = compact.lstrip("+")
    if compact[0] == "+":
        return _international(digits, text)
    if region != "CN":
        return _other_region(digits, region, text)
    if digits.startswith("00"):
        return _international(digits[2:], text)
    if len(digits) == 13 and digits.startswith("861"):
        return _mainland(digits[2:], True, text)
    return _mainland(digits, False, text)


def _mainland(n: str, prefixed: bool, text: str) -> PhoneResult:
    """Classify a national (CN) number; `prefixed` when it came after +86/0086/86."""
    m = _MOBILE.fullmatch(n)
    if m:
        return PhoneResult("+86" + m[1], None)
    size = len(n)
    if size == 11 and n[0] == "1":
        return _bad(f"not a mainland mobile number (must start with 13–19): {_q(text)}")
    if n[:1] == "0" and 10 <= size <= 12:
        return _bad(f"{_LANDLINE} ({_q(text)})")
    if prefixed and 9 <= size <= 11 and (n[:1] in "23456789" or n[:2] == "10"):
        return _bad(f"{_LANDLINE} ({_q(text)})")  # area code without its trunk 0
    if not prefixed and size in (7, 8) and n[0] in "23456789":
        return _bad(f"{_LANDLINE} ({_q(text)}; no area code)")
    word = "short" if size < 11 else "long"
    return _bad(f"too {word} ({size} digits; a mainland mobile has 11): {_q(text)}")


def _international(d: str, text: str) -> PhoneResult:
    """`d` is everything after '+' or '00': a country code and a national number."""
    if d.startswith("86"):
        return _mainland(d[2:], True, text)
    if not d or d[0] == "0":
        return _bad(f"not a valid international number ({_q(text)})")
    if len(d) > 15:
        return _bad(f"too long ({len(d)} digits; an international number has at most 15)")
    import phonenumbers  # lazy: slow to import, only needed outside mainland China

    try:
        num = phonenumbers.parse("+" + d, None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return _bad(f"unknown country code ({_q(text)})")
        return _bad(f"not a valid international number ({_q(text)})")
    return _checked(num, text)


def _other_region(d: str, region: str, text: str) -> PhoneResult:
    import phonenumbers  # lazy, see _international

    try:
        num = phonenumbers.parse(d, region)
    except phonenumbers.NumberParseException:
        return _bad(f"not a valid number for region {region} ({_q(text)})")
    if num.country_code == 86:  # e.g. '00 86 …' dialled from abroad
        return _mainland(phonenumbers.national_significant_number(num), True, text)
    return _checked(num, text)


def _checked(num: PhoneNumber, text: str) -> PhoneResult:
    import phonenumbers

    if phonenumbers.is_valid_number(num):
        e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        if _E164.fullmatch(e164):
            return PhoneResult(e164, None)
    return _bad(f"not a valid number for +{num.country_code} ({_q(text)})")


def mask_phone(e164: str) -> str:
    """Hide the middle digits: '+8613805141234' -> '138****1234'.

    Other countries keep '+CC', the first 2 and last 4 national digits ('+4420****0958';
    under 8 national digits only the last 2).  Non-E.164 input gives '****'.
    """
    if not isinstance(e164, str) or not _E164.fullmatch(e164):
        return "****"
    if e164.startswith("+86") and len(e164) == 14:
        return f"{e164[3:6]}****{e164[-4:]}"
    import phonenumbers  # lazy, see _international

    known = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    size = next((k for k in (1, 2, 3) if int(e164[1 : k + 1]) in known), 3)
    cc, national = e164[1 : size + 1], e164[size + 1 :]
    head, tail = (2, 4) if len(national) >= 8 else (0, 2)
    return f"+{cc}{national[:head]}{'*' * (len(national) - head - tail)}{national[-tail:]}"

"""Content checks for a rendered SMS before it is queued.

The full SMS is ``【signature】 + body`` (Chinese providers put the signature first
and count it); a bare signature is wrapped in 【】. Length, encoding and parts come
from :func:`broadcast.messages.segments.count_segments` on the full text.

Warning codes (stable; one warning per finding, in this order):

``empty``                 the body is empty or only whitespace
``whitespace``            the body starts or ends with whitespace
``invisible_char``        a zero-width/format (Cf) char, a non-ASCII space (Zs other
                          than U+0020, e.g. U+00A0, U+3000) or a control char other
                          than newline, one per occurrence, position 1-based in the body
``brackets_in_body``      【 or 】 in the body (providers add the signature themselves)
``placeholder``           a leftover ``{...}`` or ``${...}`` in the rendered text
``url``                   http://, https://, www. or a bare domain (example.com/x)
``missing_unsubscribe``   category marketing without 拒收请回复R / 回T退订 / 回TD退订 /
                          退订回T / 回N退订 / reply STOP (case-insensitive)
``unsubscribe_in_notice`` category notice containing 拒收请回复R (Aliyun forbids it)
``banned_word``           each configured word found (case-insensitive, after NFKC and
                          removal of invisible characters)
``too_many_parts``        more parts than ``max_parts``
``too_long``              more than 500 characters in total (providers' maximum)

Categories: ``notice`` (通知), ``marketing`` (推广/营销), ``verification`` (验证码);
anything else raises ValueError so a typo cannot silently skip the checks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broadcast.messages.segments import count_segments

if TYPE_CHECKING:
    from broadcast.config import Settings

__all__ = ["CATEGORIES", "MAX_LENGTH", "CheckReport", "CheckWarning", "check_message", "check_text"]

MAX_LENGTH = 500
CATEGORIES: dict[str, str] = {
    "notice": "notice", "通知": "notice",
    "marketing": "marketing", "推广": "marketing", "营销": "marketing",
    "verification": "verification", "验证码": "verification",
}

_UNSUBSCRIBE = re.compile(
    r"拒收请回复\s*R|回复?\s*(?:TD|T|N)\s*退订|退订\s*回复?\s*T|reply\s+stop", re.IGNORECASE
)
_REFUSE_R = re.compile(r"拒收请回复\s*R", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\$?\{[^{}\r\n]*\}")
_TLDS = (
    "com|cn|net|org|gov|edu|mil|int|info|biz|top|xyz|vip|club|site|online|shop|store|"
    "tech|app|io|co|cc|me|tv|ly|gd|hk|tw|mo|jp|kr|us|uk|de|ru|ink|link|work|fun|icu"
)
_URLCHARS = r"[\w\-.~:/?#@!$&*+=%;,\[\]]"
_URL = re.compile(
    rf"(?:https?://|www\.){_URLCHARS}+"
    r"|(?<![\w.@-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    rf"(?:(?:{_TLDS})(?![\w-])(?:[/:?#]{_URLCHARS}*)?|[a-z]{{2,}}/{_URLCHARS}*)",
    re.IGNORECASE | re.ASCII,
)


@dataclass(frozen=True)
class CheckWarning:
    """One finding: a stable machine ``code`` and a one-line English ``message``."""

    code: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    """The full text as sent, its billing figures and the warnings found."""

    text: str
    length: int
    encoding: str
    parts: int
    warnings: list[CheckWarning] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [w.code for w in self.warnings]

    def to_dict(self) -> dict[str, object]:
        return {
            "length": self.length,
            "encoding": self.encoding,
            "parts": self.parts,
            "warnings": [{"code": w.code, "message": w.message} for w in self.warnings],
            "text": self.text,
        }


def _is_invisible(ch: str) -> bool:
    cat = unicodedata.category(ch)
    if cat == "Zs":
        return ch != " "
    return cat in ("Cf", "Zl", "Zp") or (cat == "Cc" and ch != "\n")


def _char_name(ch: str) -> str:
    return unicodedata.name(ch, "") or {"\t": "TAB", "\r": "CARRIAGE RETURN"}.get(ch, "CONTROL")


def fold(text: str) -> str:
    """``text`` as words are compared: NFKC (full-width to half-width), invisible format characters
    removed, case-folded (banned words here; reply keywords in ``broadcast.twoway.intake``)."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").casefold()


def _signed(signature: str) -> str:
    bare = signature.strip().strip("【】").strip()
    return f"【{bare}】" if bare else ""


def check_text(
    body: str,
    *,
    signature: str = "",
    max_parts: int = 3,
    category: str = "notice",
    banned_words: Sequence[str] = (),
) -> CheckReport:
    """Check ``body`` as it will be sent after ``signature``; never raises on content."""
    kind = CATEGORIES.get(category.strip().lower())
    if kind is None:
        raise ValueError(f"unknown category {category!r}: use one of notice, marketing, verification")
    text = _signed(signature) + body
    info = count_segments(text)
    found: list[CheckWarning] = []

    def warn(code: str, message: str) -> None:
        found.append(CheckWarning(code, message))

    if not body.strip():
        warn("empty", "The message body is empty.")
    if body and body != body.strip():
        where = " and ".join(
            side for side, bad in (("leading", body != body.lstrip()),
                                   ("trailing", body != body.rstrip())) if bad
        )
        warn("whitespace", f"The body has {where} whitespace.")
    for pos, ch in enumerate(body, start=1):
        if _is_invisible(ch):
            warn("invisible_char",
                 f"Invisible character U+{ord(ch):04X} ({_char_name(ch)}) at position {pos}.")
    if "【" in body or "】" in body:
        warn("brackets_in_body", "The body contains 【 or 】; providers add the signature brackets.")
    for token in dict.fromkeys(_PLACEHOLDER.findall(text)):
        warn("placeholder", f"Unfilled placeholder {token} in the text.")
    for url in dict.fromkeys(m.group(0).rstrip(".,;:!?") for m in _URL.finditer(text)):
        warn("url", f"The text contains a link ({url}); providers only allow pre-registered links.")
    if kind == "marketing" and not _UNSUBSCRIBE.search(text):
        warn("missing_unsubscribe", "Marketing SMS must include unsubscribe wording such as 拒收请回复R.")
    if kind == "notice" and _REFUSE_R.search(text):
        warn("unsubscribe_in_notice", "Notice SMS must not contain 拒收请回复R (marketing wording).")
    folded = fold(text)
    seen: set[str] = set()
    for word in (w.strip() for w in banned_words):
        key = fold(word)
        if key and key not in seen and key in folded:
            seen.add(key)
            warn("banned_word", f"The text contains the banned word {word!r}.")
    if info.parts > max_parts:
        warn("too_many_parts", f"The SMS is {info.parts} parts; the limit is {max_parts}.")
    if info.length > MAX_LENGTH:
        warn("too_long", f"The SMS is {info.length} characters; providers accept at most {MAX_LENGTH}.")
    return CheckReport(text, info.length, info.encoding, info.parts, found)


def wrap_signature(signature: str) -> str:
    """``城南新区`` or ``【城南新区】`` -> ``【城南新区】``; blank -> ``''``."""
    return _signed(signature)


def check_message(settings: Settings, *, text: str | None = None, template: str | None = None,
                  category: str = "notice") -> CheckReport:
    """``broadcast message check``: exactly one of ``text`` / ``template`` rendered for today's
    local date as ``message new`` would freeze it, then checked with the configured signature,
    limits and banned words. Needs no database."""
    from broadcast.clock import local, now
    from broadcast.messages.compose import freeze
    from broadcast.messages.store import category_of, check_for, source_text

    source, name = source_text(settings, text, template)
    body = freeze(source, local(now(settings), settings.timezone).date(),
                  source=f"template {name!r}" if name else "--text")
    return check_for(settings, body, category_of(category))

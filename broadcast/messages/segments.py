"""SMS length and segment (part) counting.

Rules (3GPP 23.038/23.040 and the Aliyun/Tencent published examples):

* GSM-7 is used when every character is in the GSM 03.38 basic table or its
  extension table. Basic characters take 1 septet, extension characters
  (``| ^ € { } [ ] ~ \\`` and form feed) take 2 (escape + char).
  ``<= 160`` septets is one SMS; longer text is sent in parts of at most 153
  septets, and an extension character is never split across two parts.
* Otherwise UCS-2 is used. Units are UTF-16 code units: a character outside the
  BMP (emoji, rare Hanzi such as U+20000) takes 2. ``<= 70`` units is one SMS;
  longer text is sent in parts of at most 67 units, and a surrogate pair is
  never split.
* ``length`` is the number of code points, i.e. characters as a person (and a
  Chinese provider) counts them.
* Chinese providers count the signature (with its 【】) as part of the text, so a
  signed domestic SMS is always UCS-2: 70 chars = 1 part, 71 = 67+4,
  160 = 67+67+26. Plain GSM text: 160 = 1, 161 = 153+8, 350 = 153+153+44.
* The empty text is one (empty) SMS: ``parts == 1``, ``length == 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "SegmentInfo",
    "count_segments",
    "split_parts",
]

GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 default alphabet (1 septet each; ESC itself excluded)."""

GSM7_EXTENSION: frozenset[str] = frozenset("|^€{}[]~\\\f")
"""Characters of the GSM 03.38 extension table (2 septets each)."""

Encoding = Literal["GSM-7", "UCS-2"]

_LIMITS: dict[str, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SegmentInfo:
    """How a text is billed: ``parts`` SMS of up to ``per_part`` units each."""

    length: int
    encoding: Encoding
    units: int
    parts: int
    per_part: int


def _encoding(text: str) -> Encoding:
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            return "UCS-2"
    return "GSM-7"


def _unit_size(ch: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def _boundaries(text: str, encoding: Encoding) -> tuple[int, list[int]]:
    """Return (total units, start index of every part) for ``text``."""
    single, per_part = _LIMITS[encoding]
    sizes = [_unit_size(ch, encoding) for ch in text]
    total = sum(sizes)
    if total <= single:
        return total, [0]
    starts = [0]
    used = 0
    for i, size in enumerate(sizes):
        if used + size > per_part:
            starts.append(i)
            used = 0
        used += size
    return total, starts


def count_segments(text: str) -> SegmentInfo:
    """Count characters, encoding units and billed parts of ``text``.

    Fast when every unit has one size (no astral character in UCS-2, no extension character
    in GSM-7): then the parts are ``ceil(units / per_part)``, with no per-character walk.
    Freezing an audience counts every rendered text."""
    encoding = _encoding(text)
    single, multi = _LIMITS[encoding]
    if encoding == "UCS-2":
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2
        uniform = units == len(text)
    else:
        wide = sum(1 for ch in text if ch in GSM7_EXTENSION)
        units, uniform = len(text) + wide, wide == 0
    if units <= single:
        parts = 1
    elif uniform:
        parts = -(-units // multi)
    else:  # a 2-unit character is never split across parts: walk the boundaries
        parts = len(_boundaries(text, encoding)[1])
    return SegmentInfo(
        length=len(text),
        encoding=encoding,
        units=units,
        parts=parts,
        per_part=single if parts == 1 else multi,
    )


def split_parts(text: str) -> list[str]:
    """Split ``text`` into the parts it is sent as (``''.join`` gives it back)."""
    _, starts = _boundaries(text, _encoding(text))
    ends = starts[1:] + [len(text)]
    return [text[a:b] for a, b in zip(starts, ends)]

"""A text as the octets of its SMS parts, for the gateways that build PDUs themselves (CMPP, SMPP).

Where a part ends is ``broadcast.messages.segments`` (the rule that counts billed parts, so what
is sent is what was counted): GSM-7 when every character is in the GSM 03.38 tables, else UCS-2;
one SMS up to 160 septets / 70 UTF-16 units, else parts of at most 153 / 67, never splitting a
surrogate pair or an escape sequence. Here each part becomes octets:

* GSM-7 *unpacked*, one septet per octet (SMPP ``data_coding`` 0: the SMSC default alphabet), an
  extension character as ``1B xx``;
* UCS-2 as UTF-16 big-endian (a character outside the BMP as its surrogate pair);
* a part of a long text starts with the 6-octet concatenation UDH ``05 00 03 ref total seq``
  (``udhi``: SMPP ``esm_class`` 0x40, CMPP ``TP_udhi`` 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from broadcast.messages.segments import count_segments, split_parts

__all__ = ["GSM7", "UCS2", "Part", "encode_gsm7", "split"]

GSM7, UCS2 = 0, 8  # SMPP data_coding / CMPP Msg_Fmt (8 = UCS-2 in both)

_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
              "|": 0x40, "€": 0x65}
_GSM_CODE = {ch: i for i, ch in enumerate(_BASIC) if ch != "\x1b"}


@dataclass(frozen=True)
class Part:
    """One SMS of a text: ``payload`` is what goes in the PDU's message field."""

    payload: bytes
    udhi: bool  # payload starts with the concatenation UDH
    total: int
    number: int  # 1-based


def encode_gsm7(text: str) -> bytes:
    """GSM 03.38, unpacked (one octet per septet). ``KeyError`` for a character outside the tables."""
    out = bytearray()
    for ch in text:
        code = _GSM_CODE.get(ch)
        if code is None:
            out += bytes((0x1B, _EXTENSION[ch]))
        else:
            out.append(code)
    return bytes(out)


def decode_gsm7(data: bytes) -> str:
    """The inverse of ``encode_gsm7`` (an unknown escape reads as a space, as 23.038 says)."""
    back = {v: k for k, v in _EXTENSION.items()}
    out, escape = [], False
    for b in data:
        if escape:
            out.append(back.get(b, " "))
            escape = False
        elif b == 0x1B:
            escape = True
        else:
            out.append(_BASIC[b & 0x7F])
    return "".join(out)


def split(text: str, ref: int, *, gsm7: bool = True) -> tuple[int, list[Part]]:
    """``(data_coding, parts)`` of ``text``; ``ref`` (0-255) names the concatenation on the handset.

    ``gsm7=False`` sends UCS-2 even for a GSM text (a link that takes only UCS-2). A UCS-2 text
    with ``gsm7=False`` splits at 67 units, like a GSM text split as UCS-2 would not: the parts are
    recomputed for UCS-2 here."""
    info = count_segments(text)
    use_gsm = gsm7 and info.encoding == "GSM-7"
    if info.parts == 1 and (use_gsm or info.encoding == "UCS-2" or len(text) <= 70):
        chunks = [text]  # one SMS (the common case): no walk over the characters
    elif use_gsm:
        chunks = split_parts(text)
    else:
        chunks = _ucs2_parts(text)
    coding = GSM7 if use_gsm else UCS2
    encode = encode_gsm7 if use_gsm else (lambda s: s.encode("utf-16-be", "surrogatepass"))
    total = len(chunks)
    if total == 1:
        return coding, [Part(encode(chunks[0]), False, 1, 1)]
    if total > 255:
        raise ValueError(f"a text of {total} parts cannot be sent (at most 255)")
    return coding, [Part(bytes((5, 0, 3, ref & 0xFF, total, i)) + encode(c), True, total, i)
                    for i, c in enumerate(chunks, 1)]


def _ucs2_parts(text: str) -> list[str]:
    if count_segments(text).encoding == "UCS-2":
        return split_parts(text)
    # a GSM text forced to UCS-2: 70 units in one SMS, else 67 a part (every character is one unit)
    if len(text) <= 70:
        return [text]
    return [text[i:i + 67] for i in range(0, len(text), 67)]

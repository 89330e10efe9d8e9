"""Tests for broadcast.messages.segments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast.messages.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentInfo,
    count_segments,
    split_parts,
)

HAN = "中"
EMOJI = "😀"
RARE_HAN = "𠀀"  # U+20000, outside the BMP


def _units(part: str, encoding: str) -> int:
    if encoding == "GSM-7":
        return sum(2 if c in GSM7_EXTENSION else 1 for c in part)
    return len(part.encode("utf-16-le", "surrogatepass")) // 2


def lengths(text: str) -> list[int]:
    return [len(p) for p in split_parts(text)]


# --- tables ------------------------------------------------------------------

def test_tables() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points minus ESC
    assert GSM7_EXTENSION == frozenset("|^€{}[]~\\\f")
    assert not GSM7_BASIC & GSM7_EXTENSION
    for ch in "@£$¥èéÇ\n\rΔ_ΩÆßÉ !\"#¤%&'()*+,-./09:;<=>?¡AZÄÖÑÜ§¿azäöñüà":
        assert ch in GSM7_BASIC
    for ch in "`çÀ中\t\x1b":
        assert ch not in GSM7_BASIC | GSM7_EXTENSION


# --- provider examples and boundaries ----------------------------------------

def test_provider_example_160_chinese_chars_is_67_67_26() -> None:
    text = "【城南新区】" + HAN * 154
    assert len(text) == 160
    info = count_segments(text)
    assert info == SegmentInfo(length=160, encoding="UCS-2", units=160, parts=3, per_part=67)
    assert lengths(text) == [67, 67, 26]


@pytest.mark.parametrize(
    ("n", "parts", "per_part", "split"),
    [(1, 1, 70, [1]), (70, 1, 70, [70]), (71, 2, 67, [67, 4]), (134, 2, 67, [67, 67]),
     (135, 3, 67, [67, 67, 1])],
)
def test_ucs2_boundaries(n: int, parts: int, per_part: int, split: list[int]) -> None:
    info = count_segments(HAN * n)
    assert (info.encoding, info.length, info.units) == ("UCS-2", n, n)
    assert (info.parts, info.per_part) == (parts, per_part)
    assert lengths(HAN * n) == split


@pytest.mark.parametrize(
    ("n", "parts", "per_part", "split"),
    [(160, 1, 160, [160]), (161, 2, 153, [153, 8]), (306, 2, 153, [153, 153]),
     (307, 3, 153, [153, 153, 1]), (350, 3, 153, [153, 153, 44])],
)
def test_gsm_boundaries(n: int, parts: int, per_part: int, split: list[int]) -> None:
    info = count_segments("a" * n)
    assert (info.encoding, info.length, info.units) == ("GSM-7", n, n)
    assert (info.parts, info.per_part) == (parts, per_part)
    assert lengths("a" * n) == split


def test_empty_text_is_one_empty_sms() -> None:
    info = count_segments("")
    assert info == SegmentInfo(length=0, encoding="GSM-7", units=0, parts=1, per_part=160)
    assert split_parts("") == [""]


def test_one_non_gsm_char_switches_to_ucs2() -> None:
    assert count_segments("a" * 100).parts == 1
    info = count_segments("a" * 99 + "ç")
    assert (info.encoding, info.parts, info.per_part) == ("UCS-2", 2, 67)


# --- GSM extension characters ------------------------------------------------

def test_extension_chars_count_two_septets() -> None:
    info = count_segments("€" * 80)
    assert (info.length, info.units, info.parts) == (80, 160, 1)
    info = count_segments("a" * 159 + "[")
    assert (info.encoding, info.units, info.parts) == ("GSM-7", 161, 2)


@pytest.mark.parametrize("ext", sorted(GSM7_EXTENSION))
def test_extension_char_never_split_at_part_boundary(ext: str) -> None:
    # 152 septets + a 2-septet char would straddle 153: it moves to part 2.
    text = "a" * 152 + ext + "b" * 10
    parts = split_parts(text)
    assert parts == ["a" * 152, ext + "b" * 10]
    assert count_segments(text).parts == 2
    # exactly fitting at 151 + 2 = 153 stays in part 1.
    text = "a" * 151 + ext + "b" * 10
    assert split_parts(text) == ["a" * 151 + ext, "b" * 10]


def test_extension_shift_can_add_a_part() -> None:
    # 153*2 = 306 septets of "a" would be 2 parts; a misplaced "€" forces a third.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text).units == 306
    assert count_segments(text).parts == 3
    assert lengths(text) == [152, 152, 1]  # "€"+151 a = 153 septets


# --- characters outside the BMP ----------------------------------------------

@pytest.mark.parametrize("wide", [EMOJI, RARE_HAN])
def test_surrogate_pair_counts_two_units(wide: str) -> None:
    info = count_segments(wide * 35)
    assert (info.length, info.units, info.parts) == (35, 70, 1)
    info = count_segments(HAN * 69 + wide)
    assert (info.length, info.units, info.parts, info.per_part) == (70, 71, 2, 67)


@pytest.mark.parametrize("wide", [EMOJI, RARE_HAN])
def test_surrogate_pair_never_split_at_67_boundary(wide: str) -> None:
    text = HAN * 66 + wide + HAN * 10
    assert split_parts(text) == [HAN * 66, wide + HAN * 10]
    text = HAN * 65 + wide + HAN * 10
    assert split_parts(text) == [HAN * 65 + wide, HAN * 10]
    assert count_segments(text).parts == 2


def test_split_parts_round_trip_example() -> None:
    text = "【城南新区】各位党员同志：" + "请于本周五下午三点到会议室参加学习。" * 10
    parts = split_parts(text)
    assert "".join(parts) == text
    assert len(parts) == count_segments(text).parts


# --- properties --------------------------------------------------------------

def _check_invariants(text: str) -> None:
    info = count_segments(text)
    parts = split_parts(text)
    assert "".join(parts) == text
    assert len(parts) == info.parts >= 1
    assert info.length == len(text)
    assert info.units == sum(_units(p, info.encoding) for p in parts)
    for part in parts:
        assert _units(part, info.encoding) <= info.per_part
    if info.parts > 1:
        assert all(parts)
        assert info.per_part == (153 if info.encoding == "GSM-7" else 67)
        # greedy: a part is only closed when the next char would not fit
        for part, nxt in zip(parts, parts[1:]):
            assert _units(part + nxt[0], info.encoding) > info.per_part


@settings(max_examples=300)
@given(st.text())
def test_property_arbitrary_text(text: str) -> None:
    _check_invariants(text)


@settings(max_examples=200)
@given(st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)), max_size=600))
def test_property_gsm_text(text: str) -> None:
    assert count_segments(text).encoding == "GSM-7"
    _check_invariants(text)


@settings(max_examples=200)
@given(st.text(alphabet=st.sampled_from(["中", "a", "€", EMOJI, RARE_HAN, "【"]), max_size=600))
def test_property_mixed_wide_text(text: str) -> None:
    _check_invariants(text)


@pytest.mark.parametrize("unit", ["中", "a", "€", EMOJI])
def test_counting_shortcut_agrees_with_the_boundary_walk(unit: str) -> None:
    """count_segments skips the per-character walk when all units have one size: for every
    length up to 10 parts, with and without one character of the other size, it agrees."""
    for n in range(0, 700):
        for text in (unit * n, unit * n + "中", "€" + unit * n, EMOJI + unit * n):
            _check_invariants(text)


def test_a_lone_surrogate_counts_one_unit_and_does_not_raise() -> None:
    for n in (1, 70, 71, 140):
        _check_invariants("\ud800" * n)

"""Replies in parts (``gateways.mo_join``): the concatenation element read from a UDH, parts joined
in order whatever order they come in, a part sent again ignored, and what never completes handed on
after the timeout, marked incomplete, never dropped."""

from __future__ import annotations

from datetime import UTC, datetime

from broadcast.gateways.base import Inbound
from broadcast.gateways.mo_join import MISSING, Joiner, MoPart, concatenation

AT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def part(n: int, total: int = 3, ref: int = 0x2A, phone: str = "+8613900000000", text: str | None = None) -> MoPart:
    body = text if text is not None else f"<{n}>"
    return MoPart(Inbound("cmpp", f"id{ref}-{n}", phone, "1065712345", body, AT, f"pdu{n};".encode()), ref, total, n)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_concatenation_elements() -> None:
    assert concatenation(bytes([5, 0, 3, 0x2A, 3, 2])) == (0x2A, 3, 2)
    assert concatenation(bytes([6, 8, 4, 0x12, 0x34, 4, 4])) == (0x11234, 4, 4)  # 16-bit refs apart from 8-bit ones
    assert concatenation(bytes([8, 0x0A, 1, 0, 0, 3, 7, 2, 1])) == (7, 2, 1)  # another element first
    assert concatenation(b"") is None and concatenation(bytes([2, 0x0A, 0])) is None
    assert concatenation(bytes([5, 0, 3, 1, 3, 4])) is None  # part 4 of 3
    assert concatenation(bytes([5, 0, 3, 1])) is None  # cut short


def test_parts_are_joined_in_order_once_the_last_comes() -> None:
    j = Joiner(10.0)
    assert j.add(part(3)) is None and j.add(part(1)) is None and len(j) == 1
    whole = j.add(part(2))
    assert whole is not None and (whole.text, whole.raw, whole.incomplete) == ("<1><2><3>", b"pdu1;pdu2;pdu3;", False)
    assert whole.provider_id == "id42-1" and len(j) == 0
    assert j.add(part(1, total=1)) == part(1, total=1).inbound  # a one-part "concatenation" is just a reply


def test_a_part_sent_again_is_not_a_new_reply() -> None:
    clock = Clock()
    j = Joiner(10.0, clock)
    assert j.add(part(1, total=2)) is None and j.add(part(1, total=2)) is None  # the same part twice: held once
    assert j.add(part(2, total=2)) is not None
    assert j.add(part(2, total=2)) is None and len(j) == 0  # sent again after its answer was lost
    clock.now += 11
    assert j.expired() == [] and j.add(part(1, total=2)) is None and len(j) == 1  # much later: a new reply


def test_what_never_completes_is_handed_on_after_the_timeout_marked_incomplete() -> None:
    clock = Clock()
    j = Joiner(10.0, clock)
    j.add(part(2, phone="+8613900000001"))
    clock.now += 4
    j.add(part(1, phone="+8613900000002", total=2))
    assert j.next_due() == 100.0
    clock.now += 6
    (late,) = j.expired()
    assert (late.phone, late.text, late.raw, late.incomplete) == ("+8613900000001", f"{MISSING}<2>{MISSING}",
                                                                  b"pdu2;", True)
    assert late.provider_id == "id42-2" and j.next_due() == 104.0
    (left,) = j.drain()  # the link closes: nothing held is dropped
    assert (left.text, left.incomplete) == (f"<1>{MISSING}", True) and len(j) == 0


def test_replies_of_different_senders_or_references_do_not_mix() -> None:
    j = Joiner(10.0)
    j.add(part(1, total=2, phone="+8613900000001", text="a"))
    j.add(part(1, total=2, phone="+8613900000002", text="b"))
    j.add(part(1, total=2, ref=7, phone="+8613900000001", text="c"))
    whole = j.add(part(2, total=2, phone="+8613900000001", text="d"))
    assert whole is not None and whole.text == "ad" and len(j) == 2

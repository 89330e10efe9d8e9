"""Receipt parsing (``formats``) and the record-then-apply semantics (``store``), without HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from broadcast.gateways.base import Receipt
from broadcast.receipts import store
from broadcast.receipts.formats import (
    BadCallback,
    Incoming,
    parse_kannel,
    parse_simulator,
)
from tests.helpers.receipt_rows import receipt_rows, status_of

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def kannel(**q: str) -> Incoming:
    return Incoming("GET", list(q.items()), {}, b"", NOW)


# -- formats ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "reply", "status", "code"),
    [
        ("1", "id:abc sub:001 dlvrd:001 submit date:2611270800 done date:2611270801 stat:DELIVRD err:000 text:", "delivered", "1:DELIVRD"),
        ("2", "id:abc stat:UNDELIV err:001", "failed", "2:UNDELIV:err001"),
        ("4", "", "buffered", "4"),
        ("8", "ACK/", "accepted", "8:ACK/"),
        ("16", "NACK/0x0000000b/Invalid Destination Address", "failed", "16:NACK/0x0000000b/Invalid Destination Address"),
    ],
)
def test_kannel_types(kind: str, reply: str, status: str, code: str) -> None:
    (r,) = parse_kannel(kannel(id="42", type=kind, ts="1795757092", to="+8613800000001", reply=reply, fid="f-1"))
    assert (r.delivery_id, r.provider_id, r.status, r.code) == (42, "f-1", status, code)
    assert r.at == datetime.fromtimestamp(1795757092, UTC)


def test_kannel_missing_time_uses_receipt_time_and_bad_input_is_rejected() -> None:
    (r,) = parse_kannel(kannel(id="1", type="1", ts="", fid=""))
    assert r.at == NOW and r.provider_id is None
    for bad in (dict(id="1", type="3"), dict(id="1"), dict(id="x", type="1"), dict(type="1")):
        with pytest.raises(BadCallback):
            parse_kannel(kannel(**bad))


def test_simulator_json() -> None:
    body = b'[{"delivery_id": 5, "status": "delivered", "code": "DELIVRD", "at": "2026-11-27T08:00:00Z"},' \
           b' {"delivery_id": "6", "status": "failed", "code": "UNDELIV"}]'
    a, b = parse_simulator(Incoming("POST", [], {}, body, NOW))
    assert (a.delivery_id, a.status, a.code, a.at) == (5, "delivered", "DELIVRD", datetime(2026, 11, 27, 8, tzinfo=UTC))
    assert (b.delivery_id, b.status, b.at) == (6, "failed", NOW)
    for bad in (b"nope", b'{"delivery_id": 1, "status": "read"}', b'{"delivery_id": true, "status": "failed"}', b"[1]"):
        with pytest.raises(BadCallback):
            parse_simulator(Incoming("POST", [], {}, bad, NOW))


# -- apply semantics --------------------------------------------------------------------------

def rec(did: int, status: str, code: str | None = None) -> tuple[str, Receipt]:
    return ("kannel", Receipt(did, None, status, code, NOW))  # type: ignore[arg-type]


def apply_all(engine: sa.Engine) -> store.Applied:
    out = store.apply_pending(engine, NOW, limit=10_000)
    return out


def test_record_then_apply_delivered_failed_and_interim(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    a, b, c, d = make_deliveries(4, "accepted")
    store.record(engine, [rec(a, "delivered", "1:DELIVRD"), rec(b, "failed", "2:UNDELIV"), rec(c, "accepted"),
                          rec(d, "buffered")], NOW)
    assert [row.applied for row in receipt_rows(engine)] == [0, 0, 0, 0]  # recorded first, not applied
    out = apply_all(engine)
    assert (out.changed, out.applied, out.flagged, out.unknown) == (2, 4, 0, 0)
    assert status_of(engine, a, b, c, d) == ["delivered", "failed", "accepted", "accepted"]
    assert [row.applied for row in receipt_rows(engine)] == [1, 1, 1, 1]
    with engine.connect() as conn:
        row = conn.execute(sa.text("select error_code, error_text from deliveries where id=:i"), {"i": b}).one()
    assert row == ("2:UNDELIV", "the network reported it undelivered")


def test_duplicates_are_idempotent(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1)
    store.record(engine, [rec(a, "delivered"), rec(a, "delivered")], NOW)
    assert apply_all(engine).changed == 1
    store.record(engine, [rec(a, "delivered")], NOW)
    out = apply_all(engine)
    assert (out.changed, out.applied, out.flagged) == (0, 1, 0)
    assert status_of(engine, a) == ["delivered"] and len(receipt_rows(engine)) == 3


def test_out_of_order_late_accepted_never_overwrites_delivered(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1)
    store.record(engine, [rec(a, "delivered"), rec(a, "accepted"), rec(a, "buffered")], NOW)  # Kannel sends 1 before 8
    apply_all(engine)
    assert status_of(engine, a) == ["delivered"]


def test_failure_after_delivered_is_recorded_and_flagged(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1)
    store.record(engine, [rec(a, "delivered"), rec(a, "failed", "16:NACK")], NOW)
    out = apply_all(engine)
    assert out.flagged == 1 and status_of(engine, a) == ["delivered"]
    assert [row.applied for row in receipt_rows(engine)] == [store.APPLIED, store.FLAGGED]


def test_unknown_delivery_is_logged_not_an_error(engine: sa.Engine) -> None:
    store.record(engine, [rec(999_999, "delivered"), ("kannel", Receipt(None, "nobody", "failed", None, NOW))], NOW)
    out = apply_all(engine)
    assert out.unknown == 2 and [row.applied for row in receipt_rows(engine)] == [store.UNKNOWN, store.UNKNOWN]


def test_receipt_settles_in_doubt_and_retry_wait(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    a, b = make_deliveries(2, "in_doubt")
    (c,) = make_deliveries(1, "retry_wait")
    store.record(engine, [rec(a, "accepted"), rec(b, "delivered"), rec(c, "buffered")], NOW)
    apply_all(engine)
    assert status_of(engine, a, b, c) == ["accepted", "delivered", "accepted"]


def test_receipt_for_a_sending_delivery_waits_for_the_run(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1, "sending")
    store.record(engine, [rec(a, "delivered")], NOW)
    out = apply_all(engine)
    assert out.deferred == 1 and [row.applied for row in receipt_rows(engine)] == [store.PENDING]
    with engine.begin() as conn:
        conn.execute(sa.text("update deliveries set status='accepted' where id=:i"), {"i": a})
    assert apply_all(engine).changed == 1 and status_of(engine, a) == ["delivered"]


def test_delivered_after_a_failed_send_is_flagged(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1, "failed")
    (q,) = make_deliveries(1, "queued")
    store.record(engine, [rec(a, "delivered"), rec(a, "failed"), rec(q, "delivered")], NOW)
    out = apply_all(engine)
    assert status_of(engine, a, q) == ["failed", "queued"]
    assert [row.applied for row in receipt_rows(engine)] == [store.FLAGGED, store.APPLIED, store.FLAGGED] and out.flagged == 2


def test_by_provider_id(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1)
    with engine.begin() as conn:
        conn.execute(sa.text("update deliveries set provider_id='biz-1' where id=:i"), {"i": a})
    store.record(engine, [("aliyun", Receipt(None, "biz-1", "delivered", "DELIVRD", NOW))], NOW)
    apply_all(engine)
    assert status_of(engine, a) == ["delivered"]


def test_paging_moves_past_deferred_rows(engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    stuck = make_deliveries(5, "sending")
    ok = make_deliveries(5, "accepted")
    store.record(engine, [rec(i, "delivered") for i in stuck + ok], NOW)
    first = store.apply_pending(engine, NOW, limit=5)
    assert first.deferred == 5 and first.changed == 0
    second = store.apply_pending(engine, NOW, after_id=first.last_id, limit=5)
    assert second.changed == 5 and status_of(engine, *ok) == ["delivered"] * 5

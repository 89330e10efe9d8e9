"""The delivery ledger: every state change of a delivery, in short batched transactions.

    freeze   approved message -> one QUEUED row per phone (unique), in the same transaction
             that moves the message to ``sending``; running it twice is a no-op
    claim    QUEUED/RETRY_WAIT rows that are due -> SENDING, stamped with the run and a lease;
             only rows the same transaction moved are ever sent
    start    claimed rows whose request is about to leave get ``request_at`` (committed first)
    record   the gateway's answers -> ACCEPTED / RETRY_WAIT / FAILED / IN_DOUBT, with one
             ``delivery_attempts`` row per call
    release  claimed rows whose request never started (a pause, a stop) -> back to QUEUED
    recover  SENDING rows of a dead run: never started -> QUEUED again (no request left);
             started -> IN_DOUBT (hold) or RETRY_WAIT (resend), after asking the gateway where
             it can tell

The only window that cannot be closed is between a request leaving (its rows stamped as
started) and ``record`` committing the answer: rows in it are SENDING, owned by the run, and
become IN_DOUBT if the run dies. It is bounded by what one run holds claimed at a time (see ``Dispatcher.hold_limit``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from broadcast.db.bulk import db_value, execute_rows, insert_rows, marker
from broadcast.db.dispatch_models import (
    ACCEPTED,
    EXPIRED,
    FAILED,
    IN_DOUBT,
    QUEUED,
    RETRY_WAIT,
    SENDING,
    Delivery,
    DeliveryAttempt,
    ReceiptLog,
)
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.gateways.base import Outcome, SendResult
from broadcast.messages.segments import count_segments
from broadcast.recipients.optouts import put_optout

deliveries_t = table(Delivery)
attempts_t = table(DeliveryAttempt)
receipts_t = table(ReceiptLog)
messages_t = table(Message)


@dataclass(frozen=True)
class Claimed:
    id: int
    message_id: int
    phone: str
    text: str
    attempts: int  # including this one
    address: str = ""  # where the channel delivers, when not the phone (deliveries.address)
    channel: str = "sms"


@dataclass(frozen=True)
class FrozenRecipient:
    member_id: int | None
    phone: str
    name: str
    group: str
    text: str
    channel: str = "sms"  # a gateway name (channels beyond SMS), or "sms": the SMS gateway in use
    address: str = ""


# -- freeze -----------------------------------------------------------------------------------

def freeze(conn: Connection, message_id: int, recipients: Iterable[FrozenRecipient], now: datetime,
           gateway: str, kind: str = "real", counted_prefix: str = "") -> int:
    """Insert one QUEUED delivery per recipient (inside the caller's transaction). Phones that
    already have a delivery of this message are skipped (the unique index is the last guard).
    ``counted_prefix``: a signature the gateway adds itself: billed, so counted in ``parts``."""
    have = set(conn.execute(
        sa.select(deliveries_t.c.phone).where(deliveries_t.c.message_id == message_id, deliveries_t.c.kind == kind)
    ).scalars()) if kind == "real" else set()
    rows: list[tuple[object, ...]] = []
    added = 0
    t_now = db_value(conn, deliveries_t.c.queued_at, now)
    parts: dict[str, int] = {}  # many recipients share a text, or its length
    cols = ("message_id", "kind", "member_id", "phone", "name", "group_name", "text", "parts", "status", "attempts",
            "gateway", "queued_at", "updated_at", "channel", "address")
    for r in recipients:
        if r.phone in have:
            continue
        have.add(r.phone)
        n = parts.get(r.text)
        if n is None:
            n = parts[r.text] = count_segments(counted_prefix + r.text).parts
            if len(parts) > 10_000:
                parts.clear()
        rows.append((message_id, kind, r.member_id, r.phone, r.name, r.group, r.text, n, QUEUED, 0,
                     gateway if r.channel == "sms" else r.channel, t_now, t_now, r.channel, r.address))
        if len(rows) == 5000:  # insert as we go: memory stays flat with the audience size
            insert_rows(conn, deliveries_t, cols, rows)
            added += len(rows)
            rows = []
    if rows:
        insert_rows(conn, deliveries_t, cols, rows)
        added += len(rows)
    return added


def unfreeze(conn: Connection, message_id: int, after_id: int) -> int:
    """Take back, in the freeze's transaction, the rows it inserted (ids above ``after_id``): held over a budget."""
    d = deliveries_t
    return conn.execute(d.delete().where(d.c.message_id == message_id, d.c.kind == "real", d.c.id > after_id,
                                         d.c.status == QUEUED)).rowcount


# -- claim ------------------------------------------------------------------------------------

def claim(engine: Engine, run_id: str, message_ids: Sequence[int], limit: int, now: datetime,
          lease: timedelta, channel: str = "sms") -> list[Claimed]:
    """Move up to ``limit`` due rows of these messages on ``channel`` to SENDING for this run, in
    one transaction (SQLite: under the write lock; PostgreSQL: FOR UPDATE SKIP LOCKED)."""
    if limit <= 0 or not message_ids:
        return []
    stmt = _CLAIM_PG if engine.dialect.name == "postgresql" else _CLAIM
    params = dict(c_mids=list(message_ids), c_now=now, c_limit=limit, c_run=run_id, c_lease=now + lease,
                  c_channel=channel)
    with transaction(engine, write=True) as conn:
        rows = conn.execute(stmt, params).all()
    return sorted((Claimed(*r) for r in rows), key=lambda c: c.id)


def _claim_statement(postgresql: bool) -> sa.Update:
    # Built once: the hot path pays neither the construction nor the cache key of the statement.
    d = deliveries_t
    at = d.c.updated_at.type
    due = (
        sa.select(d.c.id)
        .where(
            d.c.message_id.in_(sa.bindparam("c_mids", expanding=True)),
            d.c.status.in_((QUEUED, RETRY_WAIT)), d.c.channel == sa.bindparam("c_channel", type_=d.c.channel.type),
            sa.or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= sa.bindparam("c_now", type_=at)),
        )
        .order_by(d.c.id)
        .limit(sa.bindparam("c_limit", type_=sa.Integer()))
    )
    if postgresql:
        due = due.with_for_update(skip_locked=True)
    return (
        d.update()
        .where(d.c.id.in_(due.scalar_subquery()))
        .values(status=SENDING, claimed_by=sa.bindparam("c_run", type_=d.c.claimed_by.type),
                lease_until=sa.bindparam("c_lease", type_=at), attempts=d.c.attempts + 1, request_at=None,
                updated_at=sa.bindparam("c_now", type_=at))
        .returning(d.c.id, d.c.message_id, d.c.phone, d.c.text, d.c.attempts, d.c.address, d.c.channel)
    )


_CLAIM = _claim_statement(postgresql=False)
_CLAIM_PG = _claim_statement(postgresql=True)


def mark_started(engine: Engine, run_id: str, ids: Sequence[int], now: datetime,
                 also: Sequence[Callable[[Connection], object]] = ()) -> None:
    """Stamp claimed rows whose request is about to leave (committed before it does). After a
    crash, only stamped rows may have gone: unstamped ones are queued again, not held in doubt.
    ``also``: more work for the same transaction, after the stamps (the requests' send slots)."""
    if ids:
        with transaction(engine, write=True) as conn:
            conn.execute(_MARK_STARTED, dict(s_ids=list(ids), s_run=run_id, s_now=now))
            for fn in also:
                fn(conn)


def _mark_started_statement() -> sa.Update:
    # Built once (see _claim_statement): it runs before every request.
    d = deliveries_t
    return (
        d.update()
        .where(d.c.id.in_(sa.bindparam("s_ids", expanding=True)), d.c.status == SENDING,
               d.c.claimed_by == sa.bindparam("s_run", type_=d.c.claimed_by.type))
        .values(request_at=sa.bindparam("s_now", type_=d.c.request_at.type))
    )


_MARK_STARTED = _mark_started_statement()


# -- record -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    max_attempts: int
    retry_base_s: float
    retry_max_s: float
    in_doubt: str  # hold | resend
    deadline_at: dict[int, datetime] | None = None  # message id -> when its deliveries expire


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter over the upper half: base·2^(n-1), halved at random."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(ceiling * (0.5 + 0.5 * (rng or random).random()))


@dataclass
class Outcomes:
    accepted: int = 0
    retry: int = 0
    failed: int = 0
    in_doubt: int = 0
    expired: int = 0

    def add(self, other: Outcomes) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


@dataclass(frozen=True)
class Carriers:
    """What carried each answered delivery: the gateway (after a failover, not the first one) and,
    where it was sent with a reply extension code, the address a reply to it comes back to."""

    gateways: dict[int, str]
    reply_addresses: dict[int, str]


def record(engine: Engine, run_id: str, gateway: str, pairs: Sequence[tuple[Claimed, SendResult]],
           now: datetime, policy: Policy, carried_by: dict[int, str] | None = None,
           reply_addresses: dict[int, str] | None = None) -> Outcomes:
    """Write the gateway's answers for claimed rows, in one transaction. A row is only updated
    while this run still owns it in SENDING (a lease taken over by recovery is left alone).
    ``reply_addresses``: where a reply to each row comes back (kept on the row), where its request
    carried a reply extension code."""
    out = Outcomes()
    updates: list[dict[str, object]] = []
    attempts: list[tuple[object, ...]] = []
    blocked: list[tuple[str, str, str]] = []  # phone, gateway, code: refused as on a blacklist
    for c, r in pairs:
        values: dict[str, object] = dict(b_id=c.id, b_provider_id=r.provider_id, b_code=r.code,
                                         b_text=(r.detail or "")[:500] or None, b_next=None, b_sent=None,
                                         b_reply=(reply_addresses or {}).get(c.id))
        if r.outcome is Outcome.ACCEPTED:
            values.update(b_status=ACCEPTED, b_sent=now)
            out.accepted += 1
        elif r.outcome is Outcome.RETRYABLE and r.maybe_sent and policy.in_doubt == "hold":
            values.update(b_status=IN_DOUBT, b_sent=now)
            out.in_doubt += 1
        elif r.outcome is Outcome.RETRYABLE or r.pause:
            # ``pause``: the gateway refused the account (credentials, signature, balance, a bad
            # URL), so nothing went out: the delivery waits for the next gateway or for the
            # message's resume, never failed for a fault of the account (a 云MAS request carries
            # up to 5,000 numbers)
            deadline = (policy.deadline_at or {}).get(c.message_id)
            wait = max(r.retry_after_s or 0.0, backoff_s(c.attempts, policy.retry_base_s, policy.retry_max_s))
            nxt = now + timedelta(seconds=wait)
            if c.attempts >= policy.max_attempts:
                values.update(b_status=FAILED, b_code=r.code or "max_attempts",
                              b_text=f"gave up after {c.attempts} attempts: {r.detail or r.code or 'retryable error'}"[:500])
                out.failed += 1
            elif deadline is not None and nxt > deadline:
                values.update(b_status=EXPIRED, b_code=r.code or "deadline",
                              b_text=f"not accepted before the delivery deadline: {r.detail or r.code or ''}"[:500])
                out.expired += 1
            else:
                values.update(b_status=RETRY_WAIT, b_next=nxt)
                out.retry += 1
        else:
            values.update(b_status=FAILED)
            out.failed += 1
            if r.blocked:
                blocked.append((c.phone, (carried_by or {}).get(c.id, gateway), r.code or ""))
        updates.append(values)
        outcome = "in_doubt" if values["b_status"] == IN_DOUBT else r.outcome.value
        gw = (carried_by or {}).get(c.id, gateway)
        values["b_gateway"] = gw  # the gateway that carried it (after a failover, not the first one)
        attempts.append((c.id, c.attempts, run_id, gw, outcome, r.code, (r.detail or "")[:500] or None))
    with transaction(engine, write=True) as conn:
        if marker(conn) is None:  # an unusual driver: the portable statement
            for values in updates:
                values.update(b_run=run_id, b_now=now)
            if updates:
                conn.execute(_RECORD, updates)
        else:  # the hot path: values bound once, rows straight to the driver
            d = deliveries_t
            t_now = db_value(conn, d.c.sent_at, now)
            execute_rows(conn, _RECORD_SQL, [
                (v["b_status"], v["b_provider_id"], v["b_gateway"], v["b_code"], v["b_text"],
                 None if v["b_next"] is None else db_value(conn, d.c.next_attempt_at, v["b_next"]),
                 None if v["b_sent"] is None else t_now, v["b_reply"], t_now, v["b_id"], run_id)
                for v in updates
            ])
        _insert_attempts(conn, attempts, now)
        _block(conn, blocked, now)
    return out


def _block(conn: Connection, blocked: Sequence[tuple[str, str, str]], now: datetime) -> None:
    """Numbers a provider refused as on its or the carrier's blacklist: on the opt-out list with
    source ``carrier``, so later sends skip them and report them instead of failing every day."""
    for phone, gateway, code in blocked:
        put_optout(conn, phone, reason=f"blocked by carrier: {gateway} {code}".strip(), source="carrier",
                   by="gateway", now=now, take_back=False)


_RECORD_SQL = (
    "UPDATE deliveries SET status = ?, provider_id = ?, gateway = ?, error_code = ?, error_text = ?, "
    "next_attempt_at = ?, sent_at = coalesce(?, sent_at), reply_address = coalesce(?, reply_address), claimed_by = NULL, lease_until = NULL, updated_at = ? "
    "WHERE id = ? AND status = 'sending' AND claimed_by = ?"
)


def _record_statement() -> sa.Update:
    # Built once (see _claim_statement); the run and the time are parameters like the rest.
    d = deliveries_t
    return (
        d.update()
        .where(d.c.id == sa.bindparam("b_id"), d.c.status == SENDING,
               d.c.claimed_by == sa.bindparam("b_run", type_=d.c.claimed_by.type))
        .values(status=sa.bindparam("b_status"), provider_id=sa.bindparam("b_provider_id"),
                gateway=sa.bindparam("b_gateway", type_=d.c.gateway.type),
                error_code=sa.bindparam("b_code"), error_text=sa.bindparam("b_text"),
                next_attempt_at=sa.bindparam("b_next", type_=d.c.next_attempt_at.type),
                sent_at=sa.func.coalesce(sa.bindparam("b_sent", type_=d.c.sent_at.type), d.c.sent_at),
                reply_address=sa.func.coalesce(sa.bindparam("b_reply", type_=d.c.reply_address.type), d.c.reply_address),
                claimed_by=None, lease_until=None, updated_at=sa.bindparam("b_now", type_=d.c.updated_at.type))
    )


_RECORD = _record_statement()
_INSERT_ATTEMPT = attempts_t.insert()


def _insert_attempts(conn: Connection, rows: Sequence[tuple[object, ...]], now: datetime) -> None:
    if not rows:
        return
    if marker(conn) is None:
        conn.execute(_INSERT_ATTEMPT, [
            dict(delivery_id=r[0], attempt=r[1], run_id=r[2], gateway=r[3], outcome=r[4], code=r[5], detail=r[6],
                 at=now) for r in rows
        ])
        return
    at = db_value(conn, attempts_t.c.at, now)
    insert_rows(conn, attempts_t, ("delivery_id", "attempt", "run_id", "gateway", "outcome", "code", "detail", "at"),
                [(*r, at) for r in rows])


def _fail(conn: Connection, run_id: str, gateway: str, rows: Sequence[Claimed], code: str, text: str,
          now: datetime) -> None:
    if not rows:
        return
    d = deliveries_t
    conn.execute(
        d.update().where(d.c.id.in_([c.id for c in rows]), d.c.status == SENDING, d.c.claimed_by == run_id)
        .values(status=FAILED, error_code=code, error_text=text, claimed_by=None, lease_until=None, updated_at=now)
    )
    _insert_attempts(conn, [(c.id, c.attempts, run_id, gateway, "failed", code, text) for c in rows], now)


def release(engine: Engine, run_id: str | None, rows: Sequence[Claimed], now: datetime) -> int:
    """Give back claimed rows whose request never started: QUEUED again, attempt undone (no call
    was made). Only rows still SENDING are touched: with ``run_id``, this run's own (it knows
    it did not send them, stamped or not); with ``None``, a dead run's rows found by
    ``stranded`` that were never stamped as started. Returns how many."""
    if not rows:
        return 0
    d = deliveries_t
    cond = [d.c.id.in_([c.id for c in rows]), d.c.status == SENDING]
    cond.append(d.c.request_at.is_(None) if run_id is None else d.c.claimed_by == run_id)
    with transaction(engine, write=True) as conn:
        return conn.execute(
            d.update().where(*cond)
            .values(status=QUEUED, attempts=d.c.attempts - 1, claimed_by=None, lease_until=None, updated_at=now)
        ).rowcount


# -- recovery ---------------------------------------------------------------------------------

def stranded(engine: Engine, dead_runs: Sequence[str], now: datetime) -> tuple[list[Claimed], list[Claimed]]:
    """SENDING rows owned by a dead run, or whose lease has expired: (request started, never started)."""
    d = deliveries_t
    cond = d.c.lease_until < now
    if dead_runs:
        cond = sa.or_(cond, d.c.claimed_by.in_(list(dead_runs)))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(d.c.id, d.c.message_id, d.c.phone, d.c.text, d.c.attempts, d.c.address, d.c.channel,
                      d.c.request_at).where(d.c.status == SENDING, cond).order_by(d.c.id)
        ).all()
    started = [Claimed(*r[:7]) for r in rows if r[7] is not None]
    return started, [Claimed(*r[:7]) for r in rows if r[7] is None]


def settle(engine: Engine, run_id: str, gateway: str, rows: Sequence[Claimed], known: dict[int, SendResult],
           policy: str, now: datetime) -> Outcomes:
    """Settle stranded rows: those the gateway confirms become ACCEPTED; the rest IN_DOUBT
    (hold) or RETRY_WAIT now (resend). Only rows still SENDING are touched."""
    out = Outcomes()
    d = deliveries_t
    with transaction(engine, write=True) as conn:
        for c in rows:
            r = known.get(c.id)
            if r is not None and r.outcome is Outcome.ACCEPTED:
                values: dict[str, object] = dict(status=ACCEPTED, provider_id=r.provider_id, sent_at=now)
                outcome, detail = "accepted", "confirmed by the gateway after the run that sent it died"
                out.accepted += 1
            elif policy == "resend":
                values = dict(status=RETRY_WAIT, next_attempt_at=now)
                outcome, detail = "in_doubt", "owner died mid-request; resending (BROADCAST_IN_DOUBT=resend)"
                out.retry += 1
            else:
                values = dict(status=IN_DOUBT, error_code="in_doubt",
                              error_text="the run sending it died mid-request; it may or may not have been sent")
                outcome, detail = "in_doubt", "owner died mid-request; held (BROADCAST_IN_DOUBT=hold)"
                out.in_doubt += 1
            done = conn.execute(
                d.update().where(d.c.id == c.id, d.c.status == SENDING)
                .values(claimed_by=None, lease_until=None, updated_at=now, **values)
            ).rowcount
            if done:
                _insert_attempts(conn, [(c.id, c.attempts, run_id, gateway, outcome, "recovered", detail)], now)
    return out


# -- counts -----------------------------------------------------------------------------------

def counts(conn: Connection, message_id: int, kind: str = "real") -> dict[str, int]:
    d = deliveries_t
    rows = conn.execute(
        sa.select(d.c.status, sa.func.count()).where(d.c.message_id == message_id, d.c.kind == kind)
        .group_by(d.c.status)
    ).all()
    return dict(rows)


def in_doubt_by_channel(conn: Connection, message_id: int) -> dict[str, int]:
    """A message's deliveries in doubt, per channel (a post counts once)."""
    d = deliveries_t
    return dict(conn.execute(
        sa.select(d.c.channel, sa.func.count()).where(d.c.message_id == message_id, d.c.kind == "real",
                                                      d.c.status == IN_DOUBT).group_by(d.c.channel)).all())


def expire_past_deadline(engine: Engine, message_id: int, deadline: datetime, now: datetime) -> int:
    """QUEUED/RETRY_WAIT rows of a message whose delivery deadline has passed -> EXPIRED."""
    if now < deadline:
        return 0
    d = deliveries_t
    with transaction(engine, write=True) as conn:
        return conn.execute(
            d.update().where(d.c.message_id == message_id, d.c.status.in_((QUEUED, RETRY_WAIT)))
            .values(status=EXPIRED, error_code="deadline", error_text="not sent before the delivery deadline",
                    updated_at=now)
        ).rowcount

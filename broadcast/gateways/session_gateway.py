"""What CMPP and SMPP gateways share above the session layer: parts, answers, reports, replies.

A protocol module (``cmpp``, ``smpp``) subclasses ``SessionGateway`` and provides its ``Dialect``,
the submit PDU of one part, the meaning of a submit response (``PartAnswer``) and of a request the
server sends (``PartReport`` for a status report, ``Inbound`` for a mobile-originated message).
This module does the rest, the same for both:

* **one delivery, several parts**: the text is split (``segments.split``) and every part is
  submitted through the pool's window, in order, without waiting for the one before. The delivery
  is ``accepted`` only when every part is; a part refused after others were accepted makes it
  ``permanent`` with code ``partial`` and a detail the auditors read ("2 of 3 parts accepted;
  part 3: …"), never a silent success or a resend of the parts that went;
* **throttling** (CMPP Result 8, SMPP ESME_RTHROTTLED): the part is submitted again after a
  backoff that every submit of the gateway waits out (the whole link slows down), a few times,
  then the delivery is ``retryable`` — never a failure;
* **a lost link**: a part written whose response never came makes the delivery ``retryable`` with
  ``maybe_sent`` (in doubt under the engine's rules); a part that could not be written is safe to
  send again; a refused login pauses the account (``pause``) with the server's reason;
* **status reports** arrive on the session (``on_request``): each part's id is mapped to its
  delivery as soon as its submit is answered, and one ``Receipt`` per delivery is made: delivered
  when every part is, failed when a part fails. A report whose id this process never saw (a
  restart) is passed on by provider id, which is the first part's id;
* **mobile-originated messages** are kept with their raw PDU (``Inbound``); one that came in parts
  (a concatenation UDH, or SMPP's sar_* TLVs) is joined first (``mo_join``: every part answered at
  once, the whole handed on when its last part comes, or after the join timeout, marked
  ``incomplete``, with what came).

Reports and replies go to the ``sink`` the dispatcher attaches (``listen``), which records them
before the server is answered; without one they wait in memory for ``fetch_receipts`` /
``held_inbound``.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Literal, NamedTuple

from pydantic_settings import BaseSettings

from broadcast.gateways.base import Gateway, Inbound, Outcome, Receipt, SendItem, SendResult
from broadcast.gateways.mo_join import Joiner, MoPart
from broadcast.gateways.segments import Part, split
from broadcast.gateways.session import Dialect, Frame, LinkDown, LoginRefused, SessionPool, SessionSettings

__all__ = ["Inbound", "MoPart", "PartAnswer", "PartReport", "SessionGateway", "Sink", "accepted", "part_accepted"]

log = logging.getLogger("broadcast.gateways.session")

THROTTLE_TRIES = 6  # submits of one part while the server says "too fast", then the delivery waits
THROTTLE_BACKOFF_S = 0.1  # first pause after a throttle answer, doubled each time, at most 2 s
PART_MAP_MAX = 500_000  # part ids remembered for matching reports (oldest forgotten first)
JOIN_TIMEOUT_S = 10.0  # a reply in parts waits this long for its missing parts (``mo_join``)
PLANS_MAX = 64  # texts whose parts are kept (one message's text serves all its recipients)


class PartAnswer(NamedTuple):
    """What a submit response says of one part (a named tuple: one is made per submit)."""

    ok: bool
    msg_id: str | None = None
    code: str | None = None
    detail: str | None = None
    throttled: bool = False
    recipient_fault: bool = False
    pause: bool = False


def part_accepted(msg_id: str, code: str | None = None) -> PartAnswer:
    """``PartAnswer(True, msg_id, code)``, made as a plain tuple is (one per submit: the named tuple's
    ``__new__`` with keywords costs three times as much)."""
    return _new_tuple(PartAnswer, (True, msg_id, code, None, False, False, False))


_new_tuple = tuple.__new__


@dataclass(frozen=True)
class PartReport:
    """A status report for one submitted part."""

    msg_id: str
    status: Literal["delivered", "failed"]
    code: str | None
    at: datetime


Sink = Callable[[list[Receipt], list[Inbound]], Awaitable[None]]


class _Tally:
    """One delivery's parts: the ids answered so far, and those a report said were delivered."""

    __slots__ = ("delivered", "delivery_id", "first_id", "ids", "parts")

    def __init__(self, delivery_id: int, parts: int) -> None:
        self.delivery_id, self.parts = delivery_id, parts
        self.first_id: str | None = None
        self.ids: list[str] = []
        self.delivered: set[str] = set()


class SessionGateway(Gateway):
    """Base of the gateways that speak an operator protocol over ``session.SessionPool``."""

    settings_class: ClassVar[type[BaseSettings]]
    gsm7: ClassVar[bool] = True  # may a GSM text go as GSM-7 (else UCS-2 always)

    def __init__(self, settings: BaseSettings, client: object | None = None) -> None:
        super().__init__(settings, None)  # no HTTP: the shared client is not used
        declared = type(self).capabilities  # this account's window and connections, as configured
        self.capabilities = dataclasses.replace(  # type: ignore[misc]
            declared, window=getattr(settings, "window", declared.window),
            connections=getattr(settings, "connections", declared.connections))
        self.pool = SessionPool(self.dialect, self.session_settings(), self._on_request)
        self.sink: Sink | None = None
        self._receipts: list[Receipt] = []
        self._inbound: list[Inbound] = []
        # part id -> its delivery: the delivery id alone for a one-part delivery (most are: no object
        # to make, and nothing for the garbage collector to walk), else the delivery's _Tally
        self._parts: OrderedDict[str, _Tally | int] = OrderedDict()
        self._refs = itertools.count(1)
        self._plans: dict[str, tuple[int, list[Part]]] = {}
        self._joins = Joiner(getattr(settings, "join_timeout_s", JOIN_TIMEOUT_S))
        self._join_timer: asyncio.TimerHandle | None = None
        self._handing: set[asyncio.Task[None]] = set()
        self._late: list[Inbound] = []  # replies joined (or given up on) not recorded yet
        self._slow_until = 0.0

    # -- what a protocol module provides -------------------------------------------------------

    @abc.abstractmethod
    def dialect(self) -> Dialect: ...

    @abc.abstractmethod
    def session_settings(self) -> SessionSettings: ...

    @abc.abstractmethod
    def submit_pdu(self, seq: int, item: SendItem, part: Part, coding: int) -> bytes: ...

    @abc.abstractmethod
    def classify(self, resp: Frame) -> PartAnswer: ...

    @abc.abstractmethod
    def parse_request(self, frame: Frame) -> PartReport | Inbound | MoPart | None:
        """A request the server sent: a status report, a reply (or one part of a reply: ``MoPart``),
        or None (nothing to keep)."""

    # -- send -------------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        out = []
        for item in batch:  # a loop, not a comprehension: one coroutine fewer a delivery
            out.append(await self._deliver(item))
        return out

    def _split(self, text: str) -> tuple[int, list[Part]]:
        """``segments.split`` of a text, kept for the next delivery of the same text (a message goes
        to many people); a long text's parts get a concatenation reference of their own each time."""
        plan = self._plans.get(text)
        if plan is None:
            if len(self._plans) >= PLANS_MAX:
                self._plans.clear()
            plan = self._plans[text] = split(text, 0, gsm7=self.gsm7)
        coding, parts = plan
        if len(parts) == 1:
            return plan
        ref = next(self._refs) % 256
        return coding, [dataclasses.replace(p, payload=p.payload[:3] + bytes((ref,)) + p.payload[4:]) for p in parts]

    async def _deliver(self, item: SendItem) -> SendResult:
        try:
            coding, parts = self._split(item.text)
        except ValueError as exc:
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="too_long", detail=str(exc))
        if len(parts) == 1:
            part, delivery_id = parts[0], item.delivery_id
            if self._slow_until and self._slow_until <= time.monotonic():
                self._slow_until = 0.0
            if not self._slow_until:  # the common case first: one part, no throttling, accepted
                try:
                    answer = await self.pool.call(lambda seq: self.submit_pdu(seq, item, part, coding),
                                                  lambda resp: self._note_one(resp, delivery_id))
                except (LinkDown, LoginRefused) as exc:
                    return _aggregate(delivery_id, [exc])
                if answer.ok:
                    return accepted(delivery_id, answer.msg_id)
                if not answer.throttled:
                    return _aggregate(delivery_id, [answer])
                self._slow_down(THROTTLE_BACKOFF_S)
            return _aggregate(delivery_id, [await self._submit(item, part, coding, delivery_id)])
        tally = _Tally(item.delivery_id, len(parts))
        answers = await asyncio.gather(*(self._submit(item, p, coding, tally) for p in parts))
        return _aggregate(item.delivery_id, answers)

    async def _submit(self, item: SendItem, part: Part, coding: int,
                      tally: _Tally | int) -> PartAnswer | BaseException:
        delay = THROTTLE_BACKOFF_S
        answer: PartAnswer | None = None
        number = part.number
        for _ in range(THROTTLE_TRIES):
            if self._slow_until and (wait := self._slow_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            try:
                answer = await self.pool.call(lambda seq: self.submit_pdu(seq, item, part, coding),
                                              lambda resp: self._note(resp, tally, number)
                                              if isinstance(tally, _Tally) else self._note_one(resp, tally))
            except (LinkDown, LoginRefused) as exc:
                return exc
            if not answer.throttled:
                return answer
            self._slow_down(delay)
            delay = min(delay * 2, 2.0)
        assert answer is not None
        return answer

    def _slow_down(self, delay: float) -> None:
        """A throttle answer: every submit of the gateway waits ``delay`` from now."""
        self._slow_until = max(self._slow_until, time.monotonic() + delay)

    def _note(self, resp: Frame, tally: _Tally, number: int) -> PartAnswer:
        """As the response is read: an accepted part's id, for the report that may come right behind."""
        answer = self.classify(resp)
        if answer.ok and answer.msg_id:
            self._remember_part(answer.msg_id, tally, number)
        return answer

    def _remember_part(self, msg_id: str, tally: _Tally, number: int) -> None:
        if number == 1:
            tally.first_id = msg_id
        tally.ids.append(msg_id)
        self._remember(msg_id, tally)

    def _note_one(self, resp: Frame, delivery_id: int) -> PartAnswer:
        """``_note`` of a one-part delivery: its id maps to the delivery id alone."""
        answer = self.classify(resp)
        if answer.ok and answer.msg_id:
            self._remember(answer.msg_id, delivery_id)
        return answer

    def _remember(self, msg_id: str, tally: _Tally | int) -> None:
        parts = self._parts
        parts[msg_id] = tally
        if len(parts) > PART_MAP_MAX:
            parts.popitem(last=False)

    # -- what the server sends ------------------------------------------------------------------

    def listen(self, sink: Sink) -> None:
        """Hand reports and replies to ``sink`` (awaited before the server is answered)."""
        self.sink = sink

    async def _on_request(self, frames: list[Frame]) -> None:
        receipts: list[Receipt] = []
        joined: list[Inbound] = []
        inbound, self._late = self._late, []
        for frame in frames:
            parsed = self.parse_request(frame)
            if isinstance(parsed, PartReport):
                receipt = self._receipt(parsed)
                if receipt is not None:
                    receipts.append(receipt)
            elif isinstance(parsed, Inbound):
                inbound.append(parsed)
            elif isinstance(parsed, MoPart):
                whole = self._joins.add(parsed)
                if whole is not None:
                    joined.append(whole)
        joined += self._joins.expired()
        self._arm_joins()
        try:
            await self._hand(receipts, inbound + joined)
        except BaseException:
            self._late += joined  # their parts were answered before: kept for the next batch
            raise

    async def _hand(self, receipts: list[Receipt], inbound: list[Inbound]) -> None:
        if not (receipts or inbound):
            return
        if self.sink is not None:
            await self.sink(receipts, inbound)
        else:
            self._receipts += receipts
            self._inbound += inbound

    def _arm_joins(self) -> None:
        """A timer for the oldest reply held in parts, so a quiet link hands it on in time too."""
        due = self._joins.next_due()
        if due is None or self._join_timer is not None:
            return
        delay = max(0.0, due + self._joins.timeout_s - time.monotonic())
        self._join_timer = asyncio.get_running_loop().call_later(delay, self._joins_due)

    def _joins_due(self) -> None:
        self._join_timer = None
        late = self._joins.expired()
        if late:
            task = asyncio.get_running_loop().create_task(self._hand_late(late))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)
        self._arm_joins()

    async def _hand_late(self, late: list[Inbound]) -> None:
        try:
            await self._hand([], late)
        except Exception:  # no database now: with the next batch the link brings
            log.exception("%s: replies held in parts could not be recorded yet", self.capabilities.name)
            self._late += late

    def _receipt(self, r: PartReport) -> Receipt | None:
        tally = self._parts.get(r.msg_id)
        if tally is None:  # sent by an earlier process: the first part's id is the delivery's provider id
            return Receipt(None, r.msg_id, r.status, r.code, r.at)
        if isinstance(tally, int):  # a one-part delivery: its report settles it
            del self._parts[r.msg_id]
            return Receipt(tally, r.msg_id, r.status, r.code, r.at)
        if r.status == "failed":
            self._forget(tally)
            return Receipt(tally.delivery_id, tally.first_id or r.msg_id, "failed", r.code, r.at)
        tally.delivered.add(r.msg_id)
        if len(tally.delivered) < tally.parts:
            return None
        self._forget(tally)
        return Receipt(tally.delivery_id, tally.first_id or r.msg_id, "delivered", r.code, r.at)

    def _forget(self, tally: _Tally) -> None:
        for key in tally.ids:
            self._parts.pop(key, None)

    async def fetch_receipts(self) -> list[Receipt]:
        out, self._receipts = self._receipts, []
        return out

    async def held_inbound(self) -> list[Inbound]:
        """Replies received while no sink was attached (a link used outside a run)."""
        out, self._inbound = self._inbound, []
        return out

    # -- life ---------------------------------------------------------------------------------

    async def ping(self) -> str | None:
        try:
            await self.pool.ping()
        except LoginRefused as exc:
            return f"login refused: {exc.reason}"
        except LinkDown as exc:
            return exc.reason
        finally:
            await self.pool.aclose()
            self.pool = SessionPool(self.dialect, self.session_settings(), self._on_request)
        return None

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None
        if self._handing:
            await asyncio.gather(*self._handing, return_exceptions=True)
        held, self._late = self._late + self._joins.drain(), []  # not dropped: handed on as they are
        if held:
            try:
                await self._hand([], held)
            except Exception:
                log.exception("%s: %d replies held in parts could not be recorded", self.capabilities.name, len(held))
        await super().aclose()


def now_utc() -> datetime:
    return datetime.now(UTC)


_ACCEPTED = dict(vars(SendResult(0, Outcome.ACCEPTED)))  # every field of an accepted result, defaults


def accepted(delivery_id: int, provider_id: str | None) -> SendResult:
    """``SendResult(delivery_id, Outcome.ACCEPTED, provider_id=provider_id)``, made without the frozen
    dataclass's ``__init__`` (eleven ``object.__setattr__`` calls: a sixth of a submit's CPU at full
    speed). The result is an ordinary SendResult (equal, hashable, frozen); a test holds them equal."""
    result = object.__new__(SendResult)
    vars(result).update(_ACCEPTED, delivery_id=delivery_id, provider_id=provider_id)
    return result


def _aggregate(delivery_id: int, answers: Sequence[PartAnswer | BaseException]) -> SendResult:
    """One result for a delivery from the answers to its parts (the module docstring's rules)."""
    total = len(answers)
    ok = [a for a in answers if isinstance(a, PartAnswer) and a.ok]
    refused = next((a for a in answers if isinstance(a, LoginRefused)), None)
    if refused is not None and not ok:
        return SendResult(delivery_id, Outcome.PERMANENT, code="login_refused", detail=refused.reason, pause=True)
    lost = [a for a in answers if isinstance(a, LinkDown)]
    if any(a.sent for a in lost):
        why = next(a.reason for a in lost if a.sent)
        return SendResult(delivery_id, Outcome.RETRYABLE, code="link_lost", detail=why, maybe_sent=True,
                          provider_id=ok[0].msg_id if ok else None)
    if len(ok) == total:
        first = ok[0].msg_id
        return SendResult(delivery_id, Outcome.ACCEPTED, provider_id=first,
                          detail=f"{total} parts" if total > 1 else None)
    first_bad_i, first_bad = next((i, a) for i, a in enumerate(answers, 1)
                                  if not (isinstance(a, PartAnswer) and a.ok))
    if ok:  # some parts went, one did not: the handset may show a fragment; never resent
        why = _why(first_bad)
        fault = isinstance(first_bad, PartAnswer) and first_bad.recipient_fault
        return SendResult(delivery_id, Outcome.PERMANENT, provider_id=ok[0].msg_id, code="partial",
                          detail=f"{len(ok)} of {total} parts accepted; part {first_bad_i}: {why}",
                          recipient_fault=fault)
    if isinstance(first_bad, LinkDown):  # nothing was written
        return SendResult(delivery_id, Outcome.RETRYABLE, code="link_down", detail=first_bad.reason)
    assert isinstance(first_bad, PartAnswer)
    if first_bad.throttled:
        return SendResult(delivery_id, Outcome.RETRYABLE, code=first_bad.code, detail=first_bad.detail,
                          retry_after_s=2.0)
    return SendResult(delivery_id, Outcome.PERMANENT, code=first_bad.code, detail=first_bad.detail,
                      recipient_fault=first_bad.recipient_fault, pause=first_bad.pause)


def _why(a: PartAnswer | BaseException) -> str:
    if isinstance(a, PartAnswer):
        return " ".join(x for x in (a.code, a.detail) if x) or "refused"
    return str(a)

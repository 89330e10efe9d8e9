"""Tables of the send path: runs, deliveries (one per message × phone), attempts, receipts, and
the shared rate-limit buckets. Created by migration v0003."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from broadcast.db.types import UTCDateTime, utcnow

# Delivery states. A gateway call is made only for a row that the same transaction moved from
# QUEUED/RETRY_WAIT to SENDING (the claim).
QUEUED, SENDING, RETRY_WAIT = "queued", "sending", "retry_wait"
ACCEPTED, DELIVERED, FAILED, EXPIRED, IN_DOUBT = "accepted", "delivered", "failed", "expired", "in_doubt"
OPEN_STATES = (QUEUED, RETRY_WAIT, SENDING)
FINAL_STATES = (DELIVERED, FAILED, EXPIRED)
DELIVERY_STATES = (QUEUED, SENDING, RETRY_WAIT, ACCEPTED, DELIVERED, FAILED, EXPIRED, IN_DOUBT)


class Run(SQLModel, table=True):
    """One `broadcast run`/`worker`/`send` process: who owns the deliveries it claimed."""

    __tablename__ = "runs"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    host: str = Field(sa_column=Column(String(255), nullable=False))
    pid: int = Field(sa_column=Column(Integer, nullable=False))
    pid_start: str = Field(default="", sa_column=Column(String(40), nullable=False))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    operator: str = Field(default="", sa_column=Column(String(100), nullable=False))
    started_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class Delivery(SQLModel, table=True):
    """One message to one phone. Written before any gateway call; the text is frozen here."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("uq_delivery_message_phone", "message_id", "phone", unique=True,
              sqlite_where=text("kind = 'real'"), postgresql_where=text("kind = 'real'")),
        Index("ix_deliveries_claim", "status", "next_attempt_at"),
        Index("ix_deliveries_message_status", "message_id", "status"),
        Index("ix_deliveries_phone_sent", "phone", "sent_at"),
        Index("ix_deliveries_provider_id", "provider_id"),
        Index("ix_deliveries_claimed_by", "claimed_by"),
        Index("ix_deliveries_queued_at", "queued_at"),
        Index("ix_deliveries_status_queued", "status", "queued_at"),
        Index("ix_deliveries_report", "group_name", "message_id", "status", "gateway", "kind", "parts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(sa_column=Column(Integer, ForeignKey("messages.id"), nullable=False))
    kind: str = Field(default="real", sa_column=Column(String(10), nullable=False))  # real | test
    member_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
    )
    phone: str = Field(sa_column=Column(String(20), nullable=False))
    name: str = Field(default="", sa_column=Column(String(100), nullable=False))
    group_name: str = Field(default="", sa_column=Column(String(200), nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    parts: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    status: str = Field(default=QUEUED, sa_column=Column(String(12), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    claimed_by: str | None = Field(default=None, sa_column=Column(String(36), nullable=True))
    # set (committed) just before the request of the current attempt leaves; NULL while claimed
    # and not yet started, so a crash leaves only started rows in doubt
    request_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    lease_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    gateway: str = Field(default="", sa_column=Column(String(50), nullable=False))
    provider_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    # where a reply to it comes back, when it was sent with a reply extension code
    # (BROADCAST_REPLY_EXTENSION_DIGITS): our number + the code (Kannel, CMPP, SMPP), the provider's
    # extension field (Tencent ExtendCode, 云MAS addSerial); digits only
    reply_address: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    # the channel that carries it (sms, email, wecom-app, wecom-robot, dingtalk-robot, feishu-robot)
    # and, where that is not the phone, the address there (email, userid, ``group:<id>`` for a chat
    # post, whose people are in delivery_people); migration v0011
    channel: str = Field(default="sms", sa_column=Column(String(20), nullable=False, server_default="sms"))
    address: str = Field(default="", sa_column=Column(String(254), nullable=False, server_default=""))
    error_code: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    error_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    queued_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class DeliveryAttempt(SQLModel, table=True):
    """Every gateway call for a delivery, and every settlement of one whose call was in doubt."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(sa_column=Column(Integer, ForeignKey("deliveries.id"), nullable=False, index=True))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    run_id: str = Field(sa_column=Column(String(36), nullable=False))
    gateway: str = Field(sa_column=Column(String(50), nullable=False))
    outcome: str = Field(sa_column=Column(String(12), nullable=False))
    code: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ReceiptLog(SQLModel, table=True):
    """Delivery reports as received (recorded first, applied after)."""

    __tablename__ = "receipts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True, index=True))
    provider_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True, index=True))
    gateway: str = Field(sa_column=Column(String(50), nullable=False))
    status: str = Field(sa_column=Column(String(12), nullable=False))
    code: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    reported_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    applied: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    raw: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # the payload as received, for auditors


class RateBucket(SQLModel, table=True):
    """A token bucket shared by every process sending through one gateway (monotonic across
    machines is not needed: the refill uses wall-clock seconds, clamped to never go backwards)."""

    __tablename__ = "rate_buckets"

    key: str = Field(sa_column=Column(String(100), primary_key=True))
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    updated: float = Field(sa_column=Column(Float, nullable=False))


class InboundMessage(SQLModel, table=True):
    """A mobile-originated message (a reply) as it arrived; created by migration v0006, matched
    and classified since v0007 (``broadcast.twoway.intake``)."""

    __tablename__ = "inbound"
    __table_args__ = (UniqueConstraint("gateway", "provider_id", name="uq_inbound_provider_id"),
                      Index("ix_inbound_phone", "phone"), Index("ix_inbound_received_at", "received_at"))

    id: int | None = Field(default=None, primary_key=True)
    gateway: str = Field(sa_column=Column(String(50), nullable=False))
    provider_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    phone: str = Field(sa_column=Column(String(32), nullable=False))
    to_addr: str = Field(sa_column=Column(String(32), nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    sent_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    raw: str = Field(sa_column=Column(Text, nullable=False))  # the payload as received, hex
    extension: str = Field(default="", sa_column=Column(String(32), nullable=False, server_default=""))
    member_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # matched by phone
    message_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # the message it answers
    # what it was taken for: optout | resubscribe | submission | feedback | empty
    kind: str = Field(default="new", sa_column=Column(String(12), nullable=False, server_default="new"))

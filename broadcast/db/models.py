"""The tables, as SQLModel classes.

The schema itself is created and changed only by the numbered migrations in
``broadcast.db.migrations``; ``tests/db/test_migrations.py`` checks that migrating an empty
database yields exactly these tables. Times are UTC-aware (``UTCDateTime``). Phone numbers are
E.164 strings (``+8613805141234``): the phone number identifies a person.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from broadcast.db.types import UTCDateTime, utcnow


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "broadcast_schema"

    version: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    description: str = Field(sa_column=Column(String(200), nullable=False))
    applied_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class Group(SQLModel, table=True):
    __tablename__ = "groups"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    parent_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("groups.id", ondelete="SET NULL"), index=True, nullable=True),
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class Member(SQLModel, table=True):
    __tablename__ = "members"

    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(sa_column=Column(String(20), nullable=False, unique=True))
    name: str = Field(default="", sa_column=Column(String(100), nullable=False, index=True))
    title: str = Field(default="", sa_column=Column(String(100), nullable=False))
    notes: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    # contact points besides the phone (migration v0011): "" where the member has none
    email: str = Field(default="", sa_column=Column(String(254), nullable=False, server_default=""))
    wecom: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))  # WeCom userid
    dingtalk: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))
    feishu: str = Field(default="", sa_column=Column(String(64), nullable=False, server_default=""))


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("member_id", "group_id", name="uq_membership"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(
        sa_column=Column(Integer, ForeignKey("members.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    # the member hands in lines for the daily series on this branch's behalf (migration v0007)
    submitter: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class OptOut(SQLModel, table=True):
    """A number that must not be sent to. Kept when the member is removed or re-imported."""

    __tablename__ = "optouts"

    phone: str = Field(sa_column=Column(String(20), primary_key=True))
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_by: str = Field(default="", sa_column=Column(String(100), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    # manual (``optout add``), reply (an opt-out keyword; a re-subscribe keyword may lift it) or
    # carrier (the provider refused the number as on its blacklist); migration v0007
    source: str = Field(default="manual", sa_column=Column(String(12), nullable=False, server_default="manual"))
    inbound_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    # the person asked to be reached on no channel at all, not only by SMS (migration v0011);
    # an opt-out of one other channel is a ``channel_models.ChannelOptOut``
    all_channels: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


# --- messages, schedules (migration v0002) -------------------------------------------------

from datetime import date  # noqa: E402

from sqlalchemy import Date, PrimaryKeyConstraint  # noqa: E402


class Schedule(SQLModel, table=True):
    """A daily series: one message per line, on its sending days (``send_on``), at ``send_time`` local
    time; ``days`` is the span in calendar days from ``start_date`` to its last day."""

    __tablename__ = "schedules"

    id: int | None = Field(default=None, primary_key=True)
    series: str = Field(sa_column=Column(String(200), nullable=False))
    send_time: str = Field(sa_column=Column(String(5), nullable=False))  # HH:MM, local time
    start_date: date = Field(sa_column=Column(Date, nullable=False))
    days: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(default="active", sa_column=Column(String(20), nullable=False))  # active|paused|cancelled
    target_all: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    created_by: str = Field(default="", sa_column=Column(String(100), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    # the days it sends on: every-day | workdays | weekdays | holidays-off (broadcast.calendar)
    send_on: str = Field(default="every-day", sa_column=Column(String(20), nullable=False, server_default="every-day"))
    # the line of a day it does not send on: next (moves to the next sending day) | drop (is not sent)
    on_skip: str = Field(default="next", sa_column=Column(String(8), nullable=False, server_default="next"))


class ScheduleTarget(SQLModel, table=True):
    __tablename__ = "schedule_targets"
    __table_args__ = (PrimaryKeyConstraint("schedule_id", "group_id", name="pk_schedule_targets"),)

    schedule_id: int = Field(
        sa_column=Column(Integer, ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False)
    )
    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True)
    )


FINAL_MESSAGE_STATES = ("sent", "cancelled", "expired")
"""Statuses a message never leaves (``broadcast.messages.states.FINAL``, named here for the
layers below messages, such as a group's removal)."""


class Message(SQLModel, table=True):
    """One SMS text for an audience. ``body`` is frozen at creation: message-wide fields
    ({date} {weekday} ...) rendered, per-recipient ones ({name} {group} {phone}) kept for
    ``broadcast.messages.render_for`` at send time; literal braces stay doubled."""

    __tablename__ = "messages"

    id: int | None = Field(default=None, primary_key=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    template: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    signature: str = Field(default="", sa_column=Column(String(100), nullable=False))
    category: str = Field(default="notice", sa_column=Column(String(20), nullable=False))
    status: str = Field(sa_column=Column(String(20), nullable=False, index=True))
    author: str = Field(sa_column=Column(String(100), nullable=False))
    approver: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    reject_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    scheduled_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    send_after: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True, index=True))
    schedule_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True, index=True),
    )
    target_all: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    optout_skipped: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )  # opted-out members of the audience, counted when sending started
    started_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )  # when its audience was frozen and sending began: the day a report counts it on
    # a message to one phone only (an inbox reply): its audience is that phone, opt-outs still apply
    to_phone: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    # a series line pinned to its date in the series file (sent that day whatever the calendar says)
    pinned: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    series_line: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))  # its line in the file
    # an operator other than the author approved sending it over its groups' monthly budgets (v0010)
    over_budget_by: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    over_budget_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # the channels it goes out on, in order of preference ("wecom-app,sms"; "": SMS only), and the
    # channel a person gets it on instead when theirs refused or failed ("sms" or "") (v0011)
    channels: str = Field(default="", sa_column=Column(String(200), nullable=False, server_default=""))
    fallback: str = Field(default="", sa_column=Column(String(20), nullable=False, server_default=""))



class MessageTarget(SQLModel, table=True):
    __tablename__ = "message_targets"
    __table_args__ = (PrimaryKeyConstraint("message_id", "group_id", name="pk_message_targets"),)

    message_id: int = Field(
        sa_column=Column(Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False)
    )
    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False, index=True)
    )


# The send path's tables live in their own module; importing it here registers them with the
# metadata, so "the models" are always the whole schema.
from broadcast.db.audit_models import AuditEntry, AuditHead  # noqa: E402,F401
from broadcast.db.channel_models import ChannelOptOut, DeliveryPerson, GroupRobot  # noqa: E402,F401
from broadcast.db.cost_models import Budget  # noqa: E402,F401
from broadcast.db.dispatch_models import (  # noqa: E402,F401
    Delivery,
    DeliveryAttempt,
    RateBucket,
    ReceiptLog,
    Run,
)
from broadcast.db.twoway_models import Feedback, Submission  # noqa: E402,F401

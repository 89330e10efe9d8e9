"""Tables of the two-way features (migration v0007): the feedback inbox and branch submissions.

A reply that is neither an opt-out, a re-subscribe nor a submission becomes a ``Feedback`` item:
``new`` until triaged, then ``open`` with a ``category`` (the office's words: fix-now 立行立改,
study 列入专项研究, supervise 重点督办, no-action), then ``closed`` (the category stays, so the
report still counts it). A ``Submission`` is a line a branch hands in for the daily series, by SMS
(``inbound_id``) or in a spreadsheet; once accepted it is the message of a series day.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Date, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from broadcast.db.types import UTCDateTime, utcnow

FEEDBACK_STATUSES = ("new", "open", "closed")
FEEDBACK_CATEGORIES = ("fix-now", "study", "supervise", "no-action")
SUBMISSION_STATUSES = ("pending", "accepted", "rejected")


class Feedback(SQLModel, table=True):
    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_status", "status"), Index("ix_feedback_received_at", "received_at"))

    id: int | None = Field(default=None, primary_key=True)
    inbound_id: int = Field(sa_column=Column(Integer, ForeignKey("inbound.id"), nullable=False, unique=True))
    phone: str = Field(sa_column=Column(String(32), nullable=False))
    member_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("members.id", ondelete="SET NULL"), nullable=True))
    group_id: int | None = Field(  # the member's branch when the reply came
        default=None, sa_column=Column(Integer, ForeignKey("groups.id", ondelete="SET NULL"), nullable=True))
    message_id: int | None = Field(  # the message it most likely answers
        default=None, sa_column=Column(Integer, ForeignKey("messages.id", ondelete="SET NULL"), nullable=True))
    text: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="new", sa_column=Column(String(12), nullable=False))
    category: str | None = Field(default=None, sa_column=Column(String(12), nullable=True))
    assigned_group_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("groups.id", ondelete="SET NULL"), nullable=True))
    due_date: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    note: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    received_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class Submission(SQLModel, table=True):
    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_status", "status"), Index("ix_submissions_group_id", "group_id"))

    id: int | None = Field(default=None, primary_key=True)
    group_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("groups.id", ondelete="SET NULL"), nullable=True))
    member_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("members.id", ondelete="SET NULL"), nullable=True))
    inbound_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("inbound.id"), nullable=True, unique=True))
    source: str = Field(sa_column=Column(String(12), nullable=False))  # sms | import
    text: str = Field(sa_column=Column(Text, nullable=False))
    wanted_day: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    status: str = Field(default="pending", sa_column=Column(String(12), nullable=False))
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    schedule_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True))
    day: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    message_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("messages.id", ondelete="SET NULL"), nullable=True))
    created_by: str = Field(default="", sa_column=Column(String(100), nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    decided_by: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    decided_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))

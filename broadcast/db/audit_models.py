"""The audit trail's tables (migration v0004)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Integer, String, Text
from sqlmodel import Field, SQLModel

from broadcast.db.types import UTCDateTime


class AuditEntry(SQLModel, table=True):
    """One action that changed state (or showed unmasked data). Hash-chained: ``hash`` covers
    this entry's fields and ``prev_hash``; ids run 1, 2, 3 … without gaps."""

    __tablename__ = "audit_log"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False, index=True))
    operator: str = Field(sa_column=Column(String(100), nullable=False))
    action: str = Field(sa_column=Column(String(50), nullable=False, index=True))
    object: str = Field(sa_column=Column(String(300), nullable=False))
    details: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class AuditHead(SQLModel, table=True):
    """The newest entry's id and hash, updated with every append: cutting entries off the end
    of the chain shows up as a mismatch here (and against any exported head)."""

    __tablename__ = "audit_head"

    name: str = Field(sa_column=Column(String(20), primary_key=True))
    last_id: int = Field(sa_column=Column(Integer, nullable=False))
    last_hash: str = Field(sa_column=Column(String(64), nullable=False))

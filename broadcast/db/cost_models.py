"""Monthly budgets of groups (migration v0010). Money is kept in fen (分), an integer: never a float."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String
from sqlmodel import Field, SQLModel

from broadcast.db.types import UTCDateTime, utcnow


class Budget(SQLModel, table=True):
    """What a group (with all its sub-groups) may spend on SMS in one local calendar month."""

    __tablename__ = "budgets"

    group_id: int = Field(
        sa_column=Column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    )
    monthly_fen: int = Field(sa_column=Column(BigInteger, nullable=False))
    set_by: str = Field(default="", sa_column=Column(String(100), nullable=False))
    set_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))

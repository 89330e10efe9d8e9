"""Tables of the channels beyond SMS (migration v0011): a group chat's robots, opt-outs of one
channel, and the people a group-chat post stands for.

* ``GroupRobot``: the webhook of a group's chat on one platform (``wecom``, ``dingtalk``,
  ``feishu``). ``url`` holds the robot's key and ``secret`` its signing secret: both are
  credentials, never printed, audited or exported (``broadcast group robot`` shows them masked).
* ``ChannelOptOut``: a number that must not be reached on one channel (``email``, ``wecom``,
  ``dingtalk``, ``feishu``). The ``optouts`` table stays the SMS opt-out; its ``all_channels`` flag
  makes it an opt-out of every channel.
* ``DeliveryPerson``: one person a group-chat post (a delivery whose ``channel`` is a robot) was made
  for: the post is one delivery for the chat, these are the people it reached.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, Text
from sqlmodel import Field, SQLModel

from broadcast.db.types import UTCDateTime, utcnow

ROBOT_PLATFORMS = ("wecom", "dingtalk", "feishu")
OPTOUT_CHANNELS = ("sms", "email", "wecom", "dingtalk", "feishu")  # "sms": the optouts table


class GroupRobot(SQLModel, table=True):
    __tablename__ = "group_robots"
    __table_args__ = (PrimaryKeyConstraint("group_id", "platform", name="pk_group_robots"),)

    group_id: int = Field(sa_column=Column(Integer, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False))
    platform: str = Field(sa_column=Column(String(12), nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False), repr=False)
    secret: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""), repr=False)
    set_by: str = Field(default="", sa_column=Column(String(100), nullable=False, server_default=""))
    set_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ChannelOptOut(SQLModel, table=True):
    __tablename__ = "channel_optouts"
    __table_args__ = (PrimaryKeyConstraint("phone", "channel", name="pk_channel_optouts"),)

    phone: str = Field(sa_column=Column(String(20), nullable=False))
    channel: str = Field(sa_column=Column(String(20), nullable=False))
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_by: str = Field(default="", sa_column=Column(String(100), nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class DeliveryPerson(SQLModel, table=True):
    __tablename__ = "delivery_people"
    __table_args__ = (PrimaryKeyConstraint("delivery_id", "phone", name="pk_delivery_people"),
                      Index("ix_delivery_people_phone", "phone"))

    delivery_id: int = Field(
        sa_column=Column(Integer, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False))
    phone: str = Field(sa_column=Column(String(20), nullable=False))
    member_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("members.id", ondelete="SET NULL"), nullable=True))
    name: str = Field(default="", sa_column=Column(String(100), nullable=False, server_default=""))

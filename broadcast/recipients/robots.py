"""A group's chat robots: the webhook through which a message is posted into the group's chat on
WeCom (企业微信 / 政务微信 群机器人), DingTalk (钉钉 自定义机器人) or Feishu (飞书 自定义机器人). One
robot per platform per group (``group_robots``, keyed by group and platform); setting one again
replaces it.

A webhook URL is checked per platform, and its key taken out of it, the way the robot gateways
(``broadcast.gateways.wecom.extract_key``, ``dingtalk.extract_token``, ``feishu.extract_hook``) take
it: this module sits below the gateways (tests/test_layers.py), so it cannot call them, and
tests/recipients/test_robots.py holds the two to the same answers.

=========  ===============================================================  =====================
platform   webhook URL                                                      key
=========  ===============================================================  =====================
wecom      ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY``     8-128 of A-Z a-z 0-9 -
dingtalk   ``https://oapi.dingtalk.com/robot/send?access_token=TOKEN``      8-128 of A-Z a-z 0-9 _ -
feishu     ``https://open.feishu.cn/open-apis/bot/v2/hook/ID``              8-128 of A-Z a-z 0-9 -
=========  ===============================================================  =====================

Any host is accepted (政务微信, 浙政钉 and Lark run their own), over https; plain http only to the
machine itself (``127.0.0.1``, ``localhost``: a test's fake or a local proxy). A DingTalk or Feishu
robot has a signing secret when it was created with 加签 / 签名校验 (``SEC…`` on DingTalk); a WeCom
robot has none (its key is the whole credential).

The URL's key and the secret are credentials: ``group_robots`` hands them to the send path in a
``GroupRobotConfig`` whose repr hides them, and everything else (``list_robots``, ``group show``, the
audit trail) sees the URL with its key masked to its last 4 characters and ``secret: set``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.config import is_local_host
from broadcast.db.audit_chain import note
from broadcast.db.channel_models import ROBOT_PLATFORMS, GroupRobot
from broadcast.db.engine import transaction
from broadcast.db.types import table, utcnow
from broadcast.errors import InputError, NotFoundError
from broadcast.recipients.groups import clean_group_name, group_id, groups_t
from broadcast.workspace import Workspace

robots_t = table(GroupRobot)
PLATFORMS: tuple[str, ...] = ROBOT_PLATFORMS  # wecom, dingtalk, feishu
SECRET_MAX = 256


@dataclass(frozen=True)
class _Spec:
    path: str  # the URL's path ends so (a proxy may put a prefix before it)
    param: str | None  # the query parameter carrying the key (None: the path's last part)
    key: str  # the key's pattern
    example: str


SPECS = {
    "wecom": _Spec("/cgi-bin/webhook/send", "key", r"[A-Za-z0-9-]{8,128}",
                   "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"),
    "dingtalk": _Spec("/robot/send", "access_token", r"[A-Za-z0-9_-]{8,128}",
                      "https://oapi.dingtalk.com/robot/send?access_token=…"),
    "feishu": _Spec("/open-apis/bot/v2/hook/", None, r"[A-Za-z0-9-]{8,128}",
                    "https://open.feishu.cn/open-apis/bot/v2/hook/…"),
}


@dataclass(frozen=True)
class GroupRobotConfig:
    """One group's robot, as the send path needs it: ``url`` (the webhook, key included) and
    ``secret`` (``""``: an unsigned robot) are credentials and stay out of ``repr``."""

    group_id: int
    group_name: str
    platform: str  # wecom | dingtalk | feishu
    url: str = field(repr=False)
    secret: str = field(default="", repr=False)


@dataclass
class RobotInfo:
    """A robot as people see it: the URL with its key masked, whether it has a secret."""

    group: str
    platform: str
    url: str  # masked
    secret: bool
    set_by: str
    set_at: datetime
    replaced: bool = False  # set_robot: there was one before

    def to_dict(self) -> dict[str, object]:
        return {"group": self.group, "platform": self.platform, "url": self.url,
                "secret": "set" if self.secret else "", "set_by": self.set_by, "set_at": self.set_at.isoformat()}


def check_platform(platform: str) -> str:
    name = platform.strip().lower()
    if name not in PLATFORMS:
        raise InputError(f"{platform!r} is not a robot platform; platforms: {', '.join(PLATFORMS)}")
    return name


def robot_key(platform: str, url: str) -> str:
    """The key in a robot's webhook ``url``; ``InputError`` naming the platform and what is wrong
    (never the key)."""
    spec = SPECS[check_platform(platform)]
    what = f"--{platform} URL"
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{what}: not a webhook URL; expected {spec.example}")
    if parts.scheme == "http" and not is_local_host(parts.hostname):
        raise InputError(f"{what}: must be https:// (plain http only to 127.0.0.1 or localhost)")
    if spec.param is None:
        head, sep, key = parts.path.rpartition("/")
        ok_path = bool(sep) and f"{head}/".endswith(spec.path)
    else:
        found = parse_qs(parts.query).get(spec.param)
        key = found[0] if found else ""
        ok_path = parts.path.rstrip("/").endswith(spec.path)
    if not ok_path:
        raise InputError(f"{what}: not a {platform} robot's webhook; expected {spec.example}")
    if not re.fullmatch(spec.key, key):
        where = f"its {spec.param}=" if spec.param else "the part after /hook/"
        raise InputError(f"{what}: {where} is missing or not a robot key; expected {spec.example}")
    return key


def mask_url(platform: str, url: str) -> str:
    """``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=****1234``: the URL without anything
    but its key, and that masked to its last 4 characters."""
    spec = SPECS[platform]
    parts = urlsplit(url.strip())
    try:
        key = robot_key(platform, url)
    except InputError:
        return "****"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    base = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    masked = f"****{key[-4:]}"
    if spec.param is None:
        return base + parts.path.rpartition("/")[0] + "/" + masked
    return f"{base}{parts.path}?{spec.param}={masked}"


def check_secret(platform: str, secret: str) -> str:
    secret = secret.strip()
    if not secret:
        return ""
    if platform == "wecom":
        raise InputError("a WeCom robot has no secret: its key is in the URL (leave out --secret)")
    if len(secret) > SECRET_MAX or not all("!" <= c <= "~" for c in secret):
        raise InputError(f"--secret: not a {platform} signing secret (printable ASCII without spaces, at most {SECRET_MAX})")
    return secret


def _group(conn: Connection, group: str) -> tuple[int, str]:
    name = clean_group_name(group)
    return group_id(conn, name), name


def _info(name: str, row: sa.Row[tuple[object, ...]], replaced: bool = False) -> RobotInfo:
    m = row._mapping
    return RobotInfo(name, str(m["platform"]), mask_url(str(m["platform"]), str(m["url"])), bool(m["secret"]),
                     str(m["set_by"]), m["set_at"], replaced)


def set_robot(ws: Workspace, group: str, platform: str, url: str, secret: str = "") -> RobotInfo:
    """Set ``group``'s robot on ``platform`` (replacing the one it had). Audited as ``group.robot``
    with the platform and the key's last 4 characters, never the key or the secret."""
    platform = check_platform(platform)
    key = robot_key(platform, url)
    secret = check_secret(platform, secret)
    with transaction(ws.engine, write=True) as conn:
        gid, name = _group(conn, group)
        where = (robots_t.c.group_id == gid, robots_t.c.platform == platform)
        replaced = conn.execute(sa.select(robots_t.c.platform).where(*where)).first() is not None
        values = dict(url=url.strip(), secret=secret, set_by=ws.operator, set_at=utcnow())
        if replaced:
            conn.execute(robots_t.update().where(*where).values(**values))
        else:
            conn.execute(robots_t.insert().values(group_id=gid, platform=platform, **values))
        note(conn, ws.operator, "group.robot", f"group:{name}", platform=platform, key=f"****{key[-4:]}",
             secret="set" if secret else "", replaced=replaced)
        return _info(name, conn.execute(sa.select(robots_t).where(*where)).one(), replaced)


def remove_robot(ws: Workspace, group: str, platform: str) -> None:
    platform = check_platform(platform)
    with transaction(ws.engine, write=True) as conn:
        gid, name = _group(conn, group)
        gone = conn.execute(robots_t.delete().where(robots_t.c.group_id == gid, robots_t.c.platform == platform))
        if not gone.rowcount:
            raise NotFoundError(f"group {name!r} has no {platform} robot", hint=f"see 'broadcast group robot {name}'")
        note(conn, ws.operator, "group.robot.remove", f"group:{name}", platform=platform)


def robots_of(conn: Connection, gid: int, name: str) -> list[RobotInfo]:
    rows = conn.execute(sa.select(robots_t).where(robots_t.c.group_id == gid)).all()
    return sorted((_info(name, r) for r in rows), key=lambda r: PLATFORMS.index(r.platform))


def list_robots(ws: Workspace, group: str) -> list[RobotInfo]:
    """The group's robots, masked, in platform order."""
    with transaction(ws.engine) as conn:
        gid, name = _group(conn, group)
        return robots_of(conn, gid, name)


def group_robots(conn: Connection) -> list[GroupRobotConfig]:
    """Every group's robots, credentials included, for the send path: by group name, then
    platform (wecom, dingtalk, feishu)."""
    r, g = robots_t, groups_t
    rows = conn.execute(
        sa.select(r.c.group_id, g.c.name, r.c.platform, r.c.url, r.c.secret).join(g, g.c.id == r.c.group_id)
    ).all()
    configs = [GroupRobotConfig(gid, name, platform, url, secret) for gid, name, platform, url, secret in rows]
    return sorted(configs, key=lambda c: (c.group_name, PLATFORMS.index(c.platform) if c.platform in PLATFORMS else 9))

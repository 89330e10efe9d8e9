"""Find gateways by name: the ``broadcast.gateways`` entry-point group.

A package adds a gateway by declaring, in its ``pyproject.toml``::

    [project.entry-points."broadcast.gateways"]
    mygw = "my_package.module:MyGateway"

The built-ins are declared the same way in broadcast's own ``pyproject.toml``. When the installed
metadata is stale (an editable install made before a built-in was added), the built-ins are still
found through ``BUILTINS``; an entry point with the same name wins.

Loading is lazy: ``available()`` imports each gateway module to read its capabilities, ``load(name)``
imports one. A plugin that fails to import is left out of ``available()`` and listed by ``broken()``.
"""

from __future__ import annotations

import os
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

import httpx
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from broadcast.errors import ConfigError
from broadcast.gateways.base import Capabilities, Gateway

GROUP = "broadcast.gateways"
DEFAULT = "simulator"

#: name -> "module:Class" for the gateways shipped with broadcast.
BUILTINS: dict[str, str] = {
    "simulator": "broadcast.gateways.simulator:SimulatorGateway",
    "console": "broadcast.gateways.console:ConsoleGateway",
    "http": "broadcast.gateways.http:HttpGateway",
    "aliyun": "broadcast.gateways.aliyun:AliyunGateway",
    "tencent": "broadcast.gateways.tencent:TencentGateway",
    "twilio": "broadcast.gateways.twilio:TwilioGateway",
    "kannel": "broadcast.gateways.kannel:KannelGateway",
    "smpp": "broadcast.gateways.smpp:SmppGateway",
    "cmpp": "broadcast.gateways.cmpp:CmppGateway",
    "cmas": "broadcast.gateways.cmas:CmasGateway",
    "wecom-robot": "broadcast.gateways.wecom:WeComRobotGateway",
    "wecom-app": "broadcast.gateways.wecom_app:WeComAppGateway",
    "dingtalk-robot": "broadcast.gateways.dingtalk:DingTalkRobotGateway",
    "feishu-robot": "broadcast.gateways.feishu:FeishuRobotGateway",
    "email": "broadcast.gateways.smtp:EmailGateway",
}


def targets() -> dict[str, str]:
    """name -> "module:attr", built-ins first, then installed entry points (which win)."""
    targets = dict(BUILTINS)
    for ep in entry_points(group=GROUP):
        targets[ep.name] = ep.value
    return targets


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def names() -> list[str]:
    """Every registered name (without importing anything), sorted."""
    return sorted(targets())


def load(name: str) -> type[Gateway]:
    """The gateway class registered as ``name``; ``ConfigError`` if unknown or broken."""
    known = targets()
    target = known.get(name)
    if target is None:
        raise ConfigError(
            f"unknown gateway {name!r}; available: {', '.join(sorted(known))}",
            hint="set BROADCAST_GATEWAY to one of them (see 'broadcast gateway list')",
        )
    try:
        cls = _import(target)
    except Exception as exc:  # a third-party plugin can fail in any way
        raise ConfigError(
            f"gateway {name!r} ({target}) cannot be loaded: {type(exc).__name__}: {exc}",
            hint="reinstall the package that provides it",
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Gateway) and isinstance(getattr(cls, "capabilities", None), Capabilities)):
        raise ConfigError(f"gateway {name!r} ({target}) is not a broadcast Gateway class with capabilities")
    return cls


def available() -> dict[str, Capabilities]:
    """name -> declared capabilities of every gateway that loads, sorted by name."""
    out: dict[str, Capabilities] = {}
    for name in names():
        try:
            out[name] = load(name).capabilities
        except ConfigError:
            continue
    return out


def broken() -> dict[str, str]:
    """name -> reason, for registered gateways that cannot be loaded."""
    out: dict[str, str] = {}
    for name in names():
        try:
            load(name)
        except ConfigError as exc:
            out[name] = exc.message
    return out


def load_settings(cls: type[Gateway], **overrides: Any) -> BaseSettings:
    """Read ``cls.settings_class`` from the environment and ``.env`` (``BROADCAST_ENV_FILE``);
    a bad or missing value becomes one ``ConfigError`` naming the variable (never its secret value)."""
    settings_class = cls.settings_class
    env_file = os.environ.get("BROADCAST_ENV_FILE", ".env")
    try:
        return settings_class(_env_file=env_file, **overrides)
    except ValidationError as exc:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        missing = [(prefix + str(e["loc"][0])).upper() for e in exc.errors() if e["type"] == "missing" and e["loc"]]
        if missing:
            raise ConfigError(
                f"gateway {cls.capabilities.name!r} is missing required setting{'s' if len(missing) > 1 else ''} "
                + ", ".join(missing),
                hint="set them in the environment or in .env ('broadcast config' shows every gateway's settings)",
            ) from None
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(
            f"invalid setting {(prefix + field).upper()} for gateway {cls.capabilities.name!r}: {err['msg']}",
            hint="fix it in the environment or in .env (see 'broadcast gateway check')",
        ) from None


def create(name: str | None = None, client: httpx.AsyncClient | None = None, **overrides: Any) -> Gateway:
    """Load, configure and instantiate a gateway (default: ``BROADCAST_GATEWAY`` or ``simulator``).

    ``overrides`` are settings fields (e.g. ``seed=1``); ``client`` is the run's shared HTTP client.
    """
    name = name or os.environ.get("BROADCAST_GATEWAY") or DEFAULT
    cls = load(name)
    return cls(load_settings(cls, **overrides), client)

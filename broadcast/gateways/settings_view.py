"""What every installed gateway is configured with, for ``broadcast config`` and ``gateway check``.

The values are read as the gateway will read them (environment first, then the ``.env`` file named
by ``BROADCAST_ENV_FILE``) but without validating, so a gateway that is not fully configured is
still shown, with each missing required setting named. Secrets never appear: a secret shows as
``****`` and, when it is long enough that this gives nothing away, its last two characters.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, get_args

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from broadcast.errors import ConfigError
from broadcast.gateways import registry

MISSING = "(missing)"


def mask_secret(value: str) -> str:
    """``****`` plus at most the last 2 characters (none for a secret under 8 characters)."""
    if not value:
        return ""
    return "****" + (value[-2:] if len(value) >= 8 else "")


@dataclass(frozen=True)
class SettingView:
    env: str  # the variable, e.g. BROADCAST_ALIYUN_ACCESS_KEY_ID
    value: str  # as shown: masked if secret, MISSING if required and unset, the default if unset
    required: bool
    missing: bool
    secret: bool
    source: str  # "environment", ".env", "default" or "" (missing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _env_names(prefix: str, name: str, field: FieldInfo) -> list[str]:
    """The variables pydantic-settings reads for a field: its aliases if it has any, else prefix+name;
    the first one is the one to show."""
    alias = field.validation_alias
    if isinstance(alias, str):
        names = [alias]
    elif isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str)]
    else:
        names = [prefix + name]
    names = [n.upper() for n in names]
    return sorted(names, key=lambda n: not n.startswith(prefix.upper()))


def _dotenv() -> dict[str, str]:
    from dotenv import dotenv_values  # pydantic-settings' own .env reader

    path = os.environ.get("BROADCAST_ENV_FILE", ".env")
    if not os.path.isfile(path):
        return {}
    return {k.upper(): v for k, v in dotenv_values(path).items() if v is not None}


def describe(settings_class: type[BaseSettings], dotenv: dict[str, str] | None = None) -> list[SettingView]:
    """One row per field of ``settings_class``, in declaration order."""
    dotenv = _dotenv() if dotenv is None else dotenv
    environ = {k.upper(): v for k, v in os.environ.items()}
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    rows = []
    for name, field in settings_class.model_fields.items():
        names = _env_names(prefix, name, field)
        env = names[0]
        found = next((n for n in names if n in environ or n in dotenv), None)
        secret = _is_secret(field.annotation)
        required = field.is_required()
        if found is not None:
            raw, source = (environ[found], "environment") if found in environ else (dotenv[found], ".env")
            shown = mask_secret(raw) if secret else raw
            rows.append(SettingView(env, shown, required, False, secret, source))
        elif required:
            rows.append(SettingView(env, MISSING, True, True, secret, ""))
        else:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, SecretStr):
                default = default.get_secret_value()
            shown = mask_secret(str(default)) if secret and default else ("" if default is None else str(default))
            rows.append(SettingView(env, shown, False, False, secret, "default"))
    return rows


def missing_required(settings_class: type[BaseSettings]) -> list[str]:
    """The variables a gateway needs that are set nowhere."""
    return [row.env for row in describe(settings_class) if row.missing]


@dataclass(frozen=True)
class GatewayView:
    name: str
    settings: list[SettingView]
    problem: str | None  # why it cannot be used as configured (missing or invalid settings), or None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "problem": self.problem, "settings": [s.to_dict() for s in self.settings]}


def installed() -> list[GatewayView]:
    """Every gateway that loads, with its settings and whether they are complete and valid."""
    dotenv = _dotenv()
    views = []
    for name in registry.names():
        try:
            cls = registry.load(name)
        except ConfigError as exc:
            views.append(GatewayView(name, [], exc.message))
            continue
        rows = describe(cls.settings_class, dotenv)
        missing = [r.env for r in rows if r.missing]
        problem = None
        if missing:
            problem = "missing required setting" + ("s " if len(missing) > 1 else " ") + ", ".join(missing)
        else:
            try:
                registry.load_settings(cls)
            except ConfigError as exc:
                problem = exc.message
        views.append(GatewayView(name, rows, problem))
    return views

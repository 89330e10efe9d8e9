"""Settings, read from ``BROADCAST_*`` environment variables and a ``.env`` file.

Every setting is documented in ``.env.example``; ``broadcast config`` prints the effective values
with secrets masked. Precedence: environment variable > ``.env`` file > default. The ``.env``
file is read from the current directory, or from ``BROADCAST_ENV_FILE`` when that is set.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from broadcast.errors import ConfigError

if TYPE_CHECKING:
    from broadcast.clock import QuietHours


def default_data_dir() -> Path:
    """The per-user data directory: ``~/.local/share/broadcast`` on Linux (XDG), the
    platform's equivalent elsewhere (``%LOCALAPPDATA%\\broadcast`` on Windows)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("broadcast", appauthor=False))


class Settings(BaseSettings):
    """The effective configuration of one command."""

    model_config = SettingsConfigDict(
        env_prefix="BROADCAST_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default_factory=default_data_dir, description="Where the default SQLite database lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; default sqlite:///<data_dir>/broadcast.db. "
        "PostgreSQL: postgresql+psycopg://user:password@host/db",
    )
    operator: str | None = Field(default=None, description="Who is acting, for approvals and the audit trail; default: the OS user.")
    default_region: str = Field(default="CN", description="Country of numbers written without a country code (ISO 3166 code).")
    extra_mobile_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated mainland mobile prefixes allocated after the installed phonenumbers release "
        "(e.g. 1940,1941): their numbers are imported with a warning instead of rejected.",
    )
    debug: bool = Field(default=False, description="Show tracebacks for errors.")
    templates_dir: Path = Field(
        default=Path("templates"),
        description="Folder of message templates (NAME.txt) and daily series (series/NAME.txt).",
    )
    signature: str = Field(
        default="", description="Sender signature added to every SMS, e.g. 【城南新区】; it counts towards the length."
    )
    max_parts: int = Field(default=3, ge=1, description="Warn when an SMS needs more parts than this.")
    banned_words: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated words that make 'message check' warn."
    )
    require_approval: bool = Field(
        default=True, description="Two-person rule: a new message waits for approval by another operator."
    )
    timezone: str = Field(default="Asia/Shanghai", description="Time zone of schedules and quiet hours (IANA name).")
    quiet_hours: str = Field(
        default="21:00-07:00", description="Local time window in which nothing is sent, HH:MM-HH:MM; empty for none."
    )
    max_lateness: str = Field(
        default="2h",
        description="A message more than this late (counted from when it could first be sent) expires: 2h, 90m, 1h30m.",
    )
    now: str | None = Field(
        default=None, description="Pretend the current time is this (ISO 8601), for drills and tests."
    )
    calendar_file: str | None = Field(
        default=None,
        description="The office's own working-calendar data, which wins over the chinesecalendar package for the dates "
        "it names: a file (holiday-cn's YEAR.json as published, or CSV lines date,name,off|work plus year,YYYY when it "
        "holds a whole year's arrangement), several separated by the OS path separator (: on Linux), or a folder of them.",
    )
    # --- sending (broadcast run / worker / send) ---
    gateway: str = Field(default="simulator", description="The gateway to send through: simulator, console, http, or a plugin's name.")
    gateways: str = Field(default="", description="Failover: gateways in order, e.g. aliyun,tencent (overrides BROADCAST_GATEWAY). When one keeps failing or refuses the account, the rest of the send goes through the next.")
    rate: float | None = Field(default=None, gt=0, description="Messages per second across all processes; the lower of this and the gateway's declared limit wins. Empty: the gateway's limit, else none.")
    request_rate: float | None = Field(default=None, gt=0, description="Gateway requests per second across all processes; the lower of this and the gateway's declared limit wins. Empty: the gateway's limit, else none.")
    burst: float | None = Field(default=None, ge=1, description="Messages that may go at once above the steady rate (default: about 10 ms worth, at least 1).")
    concurrency: int = Field(default=8, ge=1, le=256, description="Requests in flight per process.")
    http_transport: Literal["aiohttp", "httpx"] = Field(default="aiohttp", description="What carries HTTP gateway requests under the httpx API: aiohttp (default; keeps up at many requests in flight) or httpx's own pool (slows down above ~30 in flight).")
    max_attempts: int = Field(default=5, ge=1, description="Gateway calls per delivery before it fails.")
    retry_base_s: float = Field(default=2.0, gt=0, description="First retry delay; doubles each attempt, with jitter.")
    retry_max_s: float = Field(default=300.0, gt=0, description="Longest delay between two attempts.")
    delivery_deadline: str = Field(default="6h", description="A delivery not accepted this long after its message started sending expires.")
    in_doubt: str = Field(default="hold", description="Deliveries whose request was in flight when a process died: hold (list them, never resend) or resend (at-least-once).")
    max_per_number_per_day: int | None = Field(default=None, ge=1, description="At most this many SMS per phone per local day; more fail with reason 'cap'. Empty: no cap.")
    max_error_rate: float = Field(default=0.5, gt=0, le=1, description="Pause a message when more than this share of its last error_window requests failed for reasons of the gateway or the account (a refused number does not count).")
    error_window: int = Field(default=50, ge=5, description="How many recent requests the auto-pause looks at.")
    receipts_pull_interval_s: float = Field(default=300.0, ge=5, description="How often `broadcast worker` pulls receipts from gateways that offer a pull API.")
    receipt_timeout: str = Field(default="72h", description="An accepted delivery with no final receipt after this long counts as unconfirmed in reports (it is not assumed delivered).")
    retention_days: int | None = Field(default=None, ge=1, description="Keep phone numbers and texts of deliveries this many days; 'broadcast purge' without --before erases older ones. Empty: keep (purge only with --before).")
    busy_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="How long a command waits for an SQLite database another process is writing before it gives up.")
    lease_s: float = Field(default=60.0, ge=5, description="How long a claimed delivery belongs to a run that stops renewing it (a crashed run on another host).")
    reply_window: str = Field(default="7d", description="A reply is taken to answer the last message sent to that phone within this long before it.")
    reply_extension_digits: int = Field(default=0, ge=0, le=6, description="Append each message's own extension code (扩展码, this many digits of its id) to our number, through gateways that can, so a reply is matched to the message it answers. 0: off. Your account must have extension codes enabled (Aliyun SmsUpExtendCode, Tencent ExtendCode, 云MAS addSerial, a CMPP/SMPP service number with room, a Kannel sender the SMSC accepts).")
    optout_keywords: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["T", "TD", "R", "N", "退订", "取消", "拒收", "STOP", "UNSUBSCRIBE"],
        description="A reply that is exactly one of these (after trimming, case folding and full-width to half-width) opts the number out.",
    )
    resubscribe_keywords: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["订阅", "START"],
        description="A reply that is exactly one of these lifts an opt-out that a reply made (never one made by hand or by the carrier).",
    )
    submit_prefix: str = Field(default="投稿", description="A branch submitter's reply that starts with this is a line handed in for the daily series.")
    inbound_max_chars: int = Field(default=2000, ge=70, le=100_000, description="Longer replies are cut to this many characters (the raw payload is kept as received).")

    @field_validator("banned_words", mode="before")
    @classmethod
    def _banned_words(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [w.strip() for w in re.split(r"[,，、]", value) if w.strip()]
        return value

    @field_validator("optout_keywords", "resubscribe_keywords", mode="before")
    @classmethod
    def _keywords(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [w.strip() for w in re.split(r"[,，、]", value) if w.strip()]
        return value

    @field_validator("reply_window")
    @classmethod
    def _reply_window(cls, value: str) -> str:
        from broadcast.clock import parse_duration

        try:
            parse_duration(value)
        except Exception:
            raise ValueError(f"not a duration like 7d or 48h: {value!r}") from None
        return value.strip()

    @field_validator("extra_mobile_prefixes", mode="before")
    @classmethod
    def _extra_mobile_prefixes(cls, value: Any) -> Any:
        items = re.split(r"[,，、\s]+", value) if isinstance(value, str) else value
        out = []
        for item in items or []:
            prefix = str(item).strip()
            if prefix and not re.fullmatch(r"1[3-9][0-9]{1,9}", prefix):
                raise ValueError(f"{prefix!r} is not the start of a mainland mobile number, like 1940")
            if prefix:
                out.append(prefix)
        return out

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from broadcast.clock import zone

        value = value.strip()
        try:
            zone(value)
        except ConfigError:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like Asia/Shanghai") from None
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        from broadcast.clock import parse_quiet_hours

        window = parse_quiet_hours(value)
        return str(window) if window else ""

    @field_validator("max_lateness")
    @classmethod
    def _max_lateness(cls, value: str) -> str:
        from broadcast.clock import format_duration, parse_duration

        return format_duration(parse_duration(value))

    @field_validator("now")
    @classmethod
    def _now(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not an ISO 8601 time like 2026-11-28T07:30") from None
        return value.strip()

    @property
    def lateness(self) -> timedelta:
        """``max_lateness`` as a timedelta."""
        from broadcast.clock import parse_duration

        return parse_duration(self.max_lateness)

    @property
    def quiet_window(self) -> QuietHours | None:
        """``quiet_hours`` parsed; None when there are none."""
        from broadcast.clock import parse_quiet_hours

        return parse_quiet_hours(self.quiet_hours)

    @field_validator("in_doubt")
    @classmethod
    def _in_doubt(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("hold", "resend"):
            raise ValueError("must be hold or resend")
        return value

    @field_validator("delivery_deadline")
    @classmethod
    def _deadline(cls, value: str) -> str:
        from broadcast.clock import parse_duration

        try:
            parse_duration(value)
        except Exception:
            raise ValueError(f"not a duration like 6h or 90m: {value!r}") from None
        return value.strip()

    @field_validator("receipt_timeout")
    @classmethod
    def _receipt_timeout(cls, value: str) -> str:
        from broadcast.clock import parse_duration

        try:
            parse_duration(value)
        except Exception:
            raise ValueError(f"not a duration like 72h or 3d: {value!r}") from None
        return value.strip()

    @property
    def receipt_wait(self) -> timedelta:
        from broadcast.clock import parse_duration

        return parse_duration(self.receipt_timeout)

    @property
    def deadline(self) -> timedelta:
        from broadcast.clock import parse_duration

        return parse_duration(self.delivery_deadline)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.strip().upper()
        if len(value) != 2 or not value.isalpha():
            raise ValueError(f"must be a two-letter country code like CN, not {value!r}")
        return value

    @property
    def gateway_names(self) -> list[str]:
        names = [n.strip() for n in self.gateways.split(",") if n.strip()]
        return names or [self.gateway]

    @cached_property
    def prices(self) -> dict[str, Decimal]:
        """Gateway name (lower case, ``_`` for other characters) -> yuan per SMS part, from
        ``BROADCAST_PRICE_<GATEWAY>``; a gateway without one has no known price."""
        return {gw: parse_price(var, raw) for gw, (var, raw) in _by_gateway("PRICE").items()}

    @cached_property
    def billing_overrides(self) -> dict[str, str]:
        """Gateway -> ``submitted`` or ``delivered`` from ``BROADCAST_BILLING_<GATEWAY>``: what the
        operator's contract bills, where it differs from what the gateway declares."""
        out = {}
        for gw, (var, raw) in _by_gateway("BILLING").items():
            value = raw.strip().lower()
            if value not in BILLING_RULES:
                raise ConfigError(f"invalid setting {var}={raw!r}: must be submitted or delivered",
                                  hint="fix it in the environment or in .env (see .env.example)")
            out[gw] = value
        return out

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'broadcast.db'}"

    @property
    def effective_operator(self) -> str:
        if self.operator:
            return self.operator
        try:
            return getpass.getuser()
        except Exception:  # no user name on this system (some containers)
            return "unknown"

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain values, with secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["database_url"] = mask_url(self.effective_database_url)
        out["operator"] = self.effective_operator
        out.update({f"price_{gw}": str(p) for gw, p in sorted(self.prices.items())})
        out.update({f"billing_{gw}": rule for gw, rule in sorted(self.billing_overrides.items())})
        return out


BILLING_RULES = ("submitted", "delivered")
"""What a provider bills: ``submitted`` — every part it accepted, delivered or not; ``delivered`` —
not the parts a carrier's receipt reports undelivered. Parts it never accepted are never billed."""

MAX_PRICE_DECIMALS = 6


def gateway_key(name: str) -> str:
    """A gateway's name as it appears in its settings' names: ``acme-sms`` -> ``acme_sms``."""
    return re.sub(r"[^0-9a-z]", "_", name.strip().lower())


def parse_price(var: str, raw: str) -> Decimal:
    """A price in yuan per SMS part (``0.045``): a plain non-negative number, at most 6 decimals."""
    text = raw.strip()
    try:
        value = Decimal(text) if re.fullmatch(r"[0-9]+(\.[0-9]+)?|\.[0-9]+", text) else None
    except InvalidOperation:
        value = None
    if value is None or value.as_tuple().exponent < -MAX_PRICE_DECIMALS:  # type: ignore[operator]
        raise ConfigError(
            f"invalid setting {var}={raw!r}: not a price in yuan per SMS part like 0.045 "
            f"(a number ≥ 0, at most {MAX_PRICE_DECIMALS} decimals, no ¥ or 元)",
            hint="fix it in the environment or in .env (see .env.example)",
        )
    return value


def _by_gateway(kind: str) -> dict[str, tuple[str, str]]:
    """``BROADCAST_<KIND>_<GATEWAY>`` settings from the environment over the ``.env`` file:
    gateway key -> (variable name, raw value). Empty values count as unset."""
    from dotenv import dotenv_values

    prefix = f"BROADCAST_{kind}_"
    env_file = Path(os.environ.get("BROADCAST_ENV_FILE", ".env"))
    found: dict[str, tuple[str, str]] = {}
    sources: list[Mapping[str, str | None]] = [dotenv_values(env_file, encoding="utf-8") if env_file.is_file() else {},
                                               os.environ]
    for source in sources:
        for var, raw in source.items():
            if var.upper().startswith(prefix) and len(var) > len(prefix):
                key = gateway_key(var[len(prefix):])
                if raw is None or not raw.strip():
                    found.pop(key, None)
                else:
                    found[key] = (var.upper(), raw)
    return found


def mask_url(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:********@h/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:********@{host}"
    return url


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value becomes one clear ``ConfigError`` line."""
    env_file = os.environ.get("BROADCAST_ENV_FILE", ".env")
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        settings.prices, settings.billing_overrides  # noqa: B018  (a bad price is an error now, not mid-send)
        return settings
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(
            f"invalid setting BROADCAST_{field.upper()}={err.get('input')!r}: {err['msg']}",
            hint="fix it in the environment or in .env (see .env.example)",
        ) from None


def is_local_host(host: str) -> bool:
    """``localhost`` or a loopback address (where plain http:// carries no secret over a network):
    the one check of every URL setting that may be http:// for a local fake or proxy."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` set in ``os.environ`` for the duration, then restored (settings are read from the
    environment: the demo's WeCom stand-in and the gateway contract kit set theirs this way)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

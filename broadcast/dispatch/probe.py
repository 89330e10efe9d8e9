"""``broadcast gateway check [--online]`` and ``broadcast gateway test PHONE``: a gateway exercised
directly, outside any message.

``check`` validates the settings offline (``Gateway.check``) and, online, makes the gateway's one
harmless authenticated call (``Gateway.ping``). ``test_message`` sends one SMS through the gateway
with delivery id 0 (no delivery row, no message: a receipt for it is logged as unknown) and writes
one audit entry (masked phone, outcome, provider id).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from broadcast.gateways.base import Addresses, Gateway, SendItem, SendResult


@dataclass
class CheckResult:
    gateway: str
    problems: list[str] = field(default_factory=list)
    online: str | None = None  # "ok", "unsupported", or "failed"
    online_problem: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.online != "failed"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"gateway": self.gateway, "ok": self.ok, "problems": self.problems}
        if self.online is not None:
            out["online"] = self.online
            out["online_problem"] = self.online_problem
        return out


def open_gateway(name: str) -> Gateway:
    """The gateway ``name`` with its settings from the environment / ``.env`` (ConfigError otherwise)."""
    from broadcast.gateways import registry

    cls = registry.load(name)
    return cls(registry.load_settings(cls))


def can_ping(gateway: Gateway) -> bool:
    return type(gateway).ping is not Gateway.ping


def check(name: str, *, online: bool = False) -> CheckResult:
    gateway = open_gateway(name)
    result = CheckResult(name, gateway.check())
    if online:
        if not can_ping(gateway):
            result.online = "unsupported"
        else:
            async def go() -> str | None:
                try:
                    return await gateway.ping()
                finally:
                    await gateway.aclose()

            problem = asyncio.run(go())
            result.online, result.online_problem = ("ok", None) if problem is None else ("failed", problem)
    return result


def test_message(ws: object, name: str, phone: str, text: str | None = None) -> tuple[str, str, SendResult]:
    """Send one SMS to ``phone`` through gateway ``name``; returns (E.164 phone, text sent, result).
    A gateway that does not address phones (``Capabilities.addresses``) takes ``phone`` as its
    address as given (an email address, a userid, a robot's name), without the SMS signature."""
    from broadcast import clock
    from broadcast.db.audit_chain import note
    from broadcast.db.engine import transaction
    from broadcast.messages.checks import wrap_signature
    from broadcast.recipients.members import parse_phone
    from broadcast.recipients.phones import mask_phone

    settings = ws.settings  # type: ignore[attr-defined]
    gateway = open_gateway(name)
    sms = gateway.capabilities.addresses is Addresses.PHONE
    e164 = parse_phone(phone, settings.default_region) if sms else phone.strip()
    if text is None:
        text = f"broadcast: test message through {name}, {clock.now(settings).strftime('%Y-%m-%d %H:%M')}"
    if sms and not gateway.capabilities.adds_signature and settings.signature:
        text = wrap_signature(settings.signature) + text
    item = SendItem(0, e164, text) if sms else SendItem(0, "", text, address=e164)

    async def go() -> SendResult:
        try:
            [result] = await gateway.send([item])
            return result
        finally:
            await gateway.aclose()

    result = asyncio.run(go())
    with transaction(ws.engine, write=True) as conn:  # type: ignore[attr-defined]
        who = {"phone": mask_phone(e164)} if sms else {"address": _mask_address(e164)}
        note(conn, ws.operator, "gateway.test", f"gateway:{name}", **who,  # type: ignore[attr-defined]
             outcome=result.outcome.value, provider_id=result.provider_id, code=result.code)
    return e164, text, result


def _mask_address(address: str) -> str:
    """An email address as ``z***@example.org`` in the audit trail; a userid or a robot's name as it is."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if at else address

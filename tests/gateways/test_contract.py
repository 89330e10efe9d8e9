"""The gateway contract kit (``broadcast.testing``) over every installed gateway.

Every entry point of the group ``broadcast.gateways`` must have a case in ``cases.py`` (a
built-in) or be a third-party gateway installed by the test itself: the kit runs over each, check
by check. The last tests install a tiny third-party gateway from a real ``.dist-info`` directory
(``entry_points.txt``), as pip would, and run the same kit over it, and over a broken one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import textwrap
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from broadcast.gateways import registry
from broadcast.gateways.base import Outcome, SendItem, SendResult
from broadcast.gateways.console import ConsoleGateway, ConsoleSettings
from broadcast.testing import CHECKS, GatewayCase, check_gateway
from tests.gateways.cases import CASES


def test_every_entry_point_has_a_case() -> None:
    installed = {ep.name for ep in entry_points(group=registry.GROUP)}
    assert set(registry.BUILTINS) <= installed
    assert installed <= {c.name for c in CASES}, f"no contract-kit case for {installed - {c.name for c in CASES}}"


def test_builtins_match_the_entry_points() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert registry.BUILTINS == pyproject["project"]["entry-points"][registry.GROUP]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.variant else c for c in CASES],
                         ids=[c.id for c in CASES])  # the failing variants run in the whole suite
def test_contract(case: GatewayCase, check: Callable[[GatewayCase], str | None]) -> None:
    check(case)


def test_results_and_items_are_immutable() -> None:
    result = SendResult(1, Outcome.ACCEPTED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.outcome = Outcome.PERMANENT  # type: ignore[misc]
    assert Outcome("retryable") is Outcome.RETRYABLE and str(Outcome.PERMANENT) == "permanent"


def test_console_prints_what_would_be_sent(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    gateway = ConsoleGateway(ConsoleSettings(), writer=lines.append)
    (result,) = asyncio.run(gateway.send([SendItem(42, "+8613800000000", "早安\n第二行")]))
    assert result.outcome is Outcome.ACCEPTED and result.provider_id == "console-42"
    assert lines == ["[console] #42 → +8613800000000: 早安⏎第二行"]
    asyncio.run(ConsoleGateway(ConsoleSettings()).send([SendItem(1, "+8613800000001", "hi")]))
    captured = capsys.readouterr()
    assert "+8613800000001: hi" in captured.err and captured.out == ""


# -- a third-party gateway, installed by entry point ------------------------------------------------

ACME = '''
"""A tiny third-party gateway: ACME's HTTP API, one message per request, a bearer token."""

from typing import ClassVar

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import Capabilities, Gateway, Outcome, SendResult, timeout_field


class AcmeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROADCAST_ACME_")
    url: str = "https://api.acme.example/sms"
    token: SecretStr = SecretStr("")
    timeout_s: float = timeout_field()


class AcmeGateway(Gateway):
    capabilities: ClassVar[Capabilities] = Capabilities(name="acme", max_batch=1, description="ACME SMS (test)")
    settings_class = AcmeSettings

    def __init__(self, settings: AcmeSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        self.acme = settings

    async def send(self, batch):
        out = []
        for item in batch:
            try:
                r = await self._http().post(self.acme.url, json={"to": item.phone, "text": item.text},
                                            headers={"Authorization": "Bearer " + self.acme.token.get_secret_value()},
                                            timeout=self.timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                out.append(SendResult(item.delivery_id, Outcome.RETRYABLE, code=type(e).__name__))
                continue
            except httpx.HTTPError as e:
                out.append(SendResult(item.delivery_id, Outcome.RETRYABLE, code=type(e).__name__, maybe_sent=True))
                continue
            if r.status_code == 200:
                out.append(SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=r.json()["id"]))
            else:
                out.append(SendResult(item.delivery_id, LEAK_OR_OUTCOME(r), code=str(r.status_code)))
        return out
'''


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, package: str) -> None:
    """``package`` on a fresh sys.path entry with a dist-info declaring ``acme`` in our group."""
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = tmp_path / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{registry.GROUP}]\nacme = {package}:AcmeGateway\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)


def acme_case(package: str) -> GatewayCase:
    import httpx

    from broadcast.gateways.base import make_client

    def gateway(handler: Callable[[httpx.Request], httpx.Response] | None = None, **over: object):
        cls = registry.load("acme")
        settings = cls.settings_class(token="acme-token-8d2f61", **over)  # type: ignore[call-arg]
        return cls(settings, make_client(2, 4, transport=httpx.MockTransport(handler)) if handler else None)

    return GatewayCase(
        "acme",
        healthy=lambda: gateway(lambda r: httpx.Response(200, json={"id": "a1"})),
        failing=lambda: gateway(lambda r: httpx.Response(503, json={"error": "down"})),
        hanging=lambda url, t: gateway(url=url + "/sms", timeout_s=t),
        recipients=lambda request: 1,
    )


def test_a_third_party_gateway_installed_by_entry_point_keeps_the_contract(tmp_path, monkeypatch) -> None:
    install(tmp_path, monkeypatch, ACME.replace("LEAK_OR_OUTCOME(r)", "Outcome.RETRYABLE"), "acme_sms")
    assert "acme" in registry.names() and registry.load("acme").__module__ == "acme_sms"
    assert registry.available()["acme"].description == "ACME SMS (test)"
    assert check_gateway(acme_case("acme_sms")) == []  # every check applied, none failed


def test_the_kit_fails_a_third_party_gateway_that_breaks_the_contract(tmp_path, monkeypatch) -> None:
    """A gateway that accepts a failed answer and puts its token in the result's code."""
    broken = ACME.replace("LEAK_OR_OUTCOME(r), code=str(r.status_code)",
                          "Outcome.ACCEPTED, code=self.acme.token.get_secret_value()")
    install(tmp_path, monkeypatch, broken, "acme_broken")
    with pytest.raises(AssertionError) as failed:
        check_gateway(acme_case("acme_broken"))
    text = str(failed.value)
    assert "gateway 'acme' fails the contract" in text
    assert "check_failures_classified" in text

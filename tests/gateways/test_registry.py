"""The registry: built-ins found by name, unknown names explained, broken plugins isolated."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from broadcast.errors import ConfigError
from broadcast.gateways import registry
from broadcast.gateways.base import Capabilities, Gateway


def test_builtins_are_available() -> None:
    available = registry.available()
    assert {"simulator", "console", "http"} <= set(available)
    for name, caps in available.items():
        assert isinstance(caps, Capabilities) and caps.name == name and caps.description
    assert available["simulator"].max_batch == 100 and available["simulator"].pull_receipts


def test_load_and_create() -> None:
    cls = registry.load("console")
    assert issubclass(cls, Gateway) and cls.capabilities.name == "console"
    assert registry.create().capabilities.name == "simulator"  # the default
    assert registry.create("simulator", seed=5).settings.seed == 5  # type: ignore[attr-defined]


def test_gateway_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_GATEWAY", "console")
    assert registry.create().capabilities.name == "console"


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as info:
        registry.load("twilio-typo")
    assert "twilio-typo" in info.value.message
    for name in ("console", "http", "simulator"):
        assert name in info.value.message


def test_invalid_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_SIMULATOR_FAILURE_RATE", "1.5")
    with pytest.raises(ConfigError, match="BROADCAST_SIMULATOR_FAILURE_RATE"):
        registry.create("simulator")


def test_third_party_plugins_and_broken_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        EntryPoint("extra", "broadcast.gateways.console:ConsoleGateway", registry.GROUP),
        EntryPoint("broken", "no_such_module_xyz:Gateway", registry.GROUP),
        EntryPoint("notagateway", "broadcast.errors:ConfigError", registry.GROUP),
    ]

    def fake_entry_points(group: str) -> list[EntryPoint]:
        return eps if group == registry.GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    assert "extra" in registry.available() and "broken" not in registry.available()
    assert set(registry.broken()) == {"broken", "notagateway"}
    with pytest.raises(ConfigError, match="cannot be loaded"):
        registry.load("broken")
    assert {"simulator", "console", "http"} <= set(registry.names())  # built-ins survive stale metadata


def test_core_does_not_import_the_cli() -> None:
    import subprocess
    import sys

    code = (
        "import sys, broadcast.gateways.registry as r, broadcast.dispatch.dispatcher, broadcast.gateways.mockserver;"
        "[r.load(n) for n in r.names()];"
        "bad=[m for m in ('typer',) if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result: Any = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

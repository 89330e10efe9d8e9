"""``broadcast gateway``: the installed gateways and the configured one."""

from __future__ import annotations

from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION

app = typer.Typer(rich_markup_mode=None, help="SMS gateways: built-ins and plugins (entry-point group broadcast.gateways).", no_args_is_help=True)


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List the gateways with their declared capabilities."""
    from dataclasses import asdict

    from broadcast.cli._output import Output
    from broadcast.gateways import registry

    caps = {name: _as_configured(name, c) for name, c in registry.available().items()}
    out = Output.for_(json_)
    out.table(None, ["Name", "Per request", "Addresses", "Mixed texts", "Adds signature", "Max msg/s", "Per address",
                     "Text bytes", "Per number/day", "Can query", "Receipts", "Window", "About"],
              ([c.name, c.max_batch, c.addresses.value, "yes" if c.mixed_texts else "", "yes" if c.adds_signature else "",
                c.max_per_second or "", _per_address(c), c.max_text_bytes or "", c.per_number_daily_cap or "",
                "yes" if c.can_query else "", "pull" if c.pull_receipts else "", _window(c), c.description]
               for c in caps.values()),
              data=[asdict(c) for c in caps.values()])
    for name, problem in registry.broken().items():
        out.warn(f"plugin {name} could not be loaded: {problem}")


def _as_configured(name: str, caps: Any) -> Any:
    """An operator link's capabilities with the window and connections its settings give, where
    they load (the declared defaults otherwise)."""
    if not caps.window:
        return caps
    from dataclasses import replace

    from broadcast.gateways import registry

    try:
        s = registry.load_settings(registry.load(name))
    except Exception:  # not configured here: the defaults
        return caps
    return replace(caps, window=getattr(s, "window", caps.window), connections=getattr(s, "connections", caps.connections))


def _per_address(c: Any) -> str:
    """A channel's limits per address: ``20/60 s``, ``5/1 s, 100/60 s``."""
    return ", ".join(f"{r.count}/{r.per_s:g} s" for r in c.per_address_rates)


def _window(c: Any) -> str:
    """An operator link's window × connections, as configured (``16 × 2``)."""
    return f"{c.window} × {c.connections or 1}" if c.window else ""


GATEWAY_OPTION = typer.Option(None, "--gateway", help="This gateway instead of BROADCAST_GATEWAY.")


@app.command("check")
def check(
    json_: bool = JSON_OPTION,
    online: bool = typer.Option(False, "--online", help="Also make one harmless authenticated call to the provider."),
    gateway: str = GATEWAY_OPTION,
) -> None:
    """Validate the configured gateway's settings without sending anything (--online: and its credentials)."""
    from broadcast.cli._output import Output
    from broadcast.config import load_settings
    from broadcast.dispatch.probe import check as run_check
    from broadcast.errors import ExitCode

    name = gateway or load_settings().gateway
    result = run_check(name, online=online)
    Output.for_(json_).result(result.to_dict(), lambda: _say_check(name, result))
    if not result.ok:
        raise typer.Exit(ExitCode.ERROR)


def _say_check(name: str, result: Any) -> None:
    """A failed check is an error line (exit 1); a passed one says what was checked."""
    from broadcast.cli._output import say, warn
    from broadcast.errors import ConfigError

    if result.online == "failed":
        raise ConfigError(f"gateway {name}: online check failed: {result.online_problem}"
                          + (f"; settings: {'; '.join(result.problems)}" if result.problems else ""),
                          hint="check the credentials and the endpoint (BROADCAST_" + name.upper() + "_*)")
    if result.problems:
        raise ConfigError(f"gateway {name}: " + "; ".join(result.problems))
    if result.online == "unsupported":
        warn(f"gateway {name} has no online check")
    if result.online == "ok":
        say(f"Gateway {name}: settings OK; online check OK (one read-only authenticated call, nothing was sent)")
    else:
        say(f"Gateway {name}: settings OK (nothing was sent)")


@app.command("test")
def test(
    phone: str = typer.Argument(..., help="Phone number to send the test SMS to (for another channel: its address: "
                                          "an email address, a WeCom userid, a robot's name)."),
    text: str = typer.Option(None, "--text", help="The text (default: a dated test line; the gateway's template applies)."),
    gateway: str = GATEWAY_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Send one test SMS (or message of another channel) through the gateway directly (no message, no delivery; audited)."""
    from dataclasses import asdict

    from broadcast.cli._common import workspace
    from broadcast.cli._output import Output
    from broadcast.dispatch.probe import test_message
    from broadcast.errors import ExitCode

    ws = workspace()
    name = gateway or ws.settings.gateway
    e164, sent, result = test_message(ws, name, phone, text)
    data = {"gateway": name, "phone": e164, "text": sent, **asdict(result)}
    data["outcome"] = result.outcome.value
    out = Output.for_(json_)
    out.table(None, ["Field", "Value"], ([k, "" if v is None else v] for k, v in data.items()), data=data)
    if result.outcome.value != "accepted":
        raise typer.Exit(ExitCode.ERROR)
    out.say(f"Accepted by {name}" + (f" (provider id {result.provider_id})" if result.provider_id else ""))

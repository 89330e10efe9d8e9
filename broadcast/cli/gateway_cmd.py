"""``broadcast gateway``: the installed gateways and the configured one."""

from __future__ import annotations

import typer

from broadcast.cli._common import JSON_OPTION

app = typer.Typer(help="SMS gateways: built-ins and plugins (entry-point group broadcast.gateways).", no_args_is_help=True)


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List the gateways with their declared capabilities."""
    from dataclasses import asdict

    from broadcast.cli._output import emit_json, table, warn
    from broadcast.gateways import registry

    caps = registry.available()
    if json_:
        emit_json([asdict(c) for c in caps.values()])
        return
    table(None, ["Name", "Per request", "Mixed texts", "Adds signature", "Max msg/s", "Per number/day", "Can query", "Receipts", "About"],
          ([c.name, c.max_batch, "yes" if c.mixed_texts else "", "yes" if c.adds_signature else "",
            c.max_per_second or "", c.per_number_daily_cap or "", "yes" if c.can_query else "",
            "pull" if c.pull_receipts else "", c.description] for c in caps.values()))
    for name, problem in registry.broken().items():
        warn(f"plugin {name} could not be loaded: {problem}")


@app.command("check")
def check(json_: bool = JSON_OPTION) -> None:
    """Validate the configured gateway's settings without sending anything."""
    from broadcast.cli._output import emit_json, say
    from broadcast.config import load_settings
    from broadcast.errors import ConfigError
    from broadcast.gateways import registry

    settings = load_settings()
    cls = registry.load(settings.gateway)
    gateway = cls(registry.load_settings(cls))
    problems = gateway.check()
    if json_:
        emit_json({"gateway": settings.gateway, "ok": not problems, "problems": problems})
        if problems:
            raise typer.Exit(1)
        return
    if problems:
        raise ConfigError(f"gateway {settings.gateway}: " + "; ".join(problems))
    say(f"Gateway {settings.gateway}: settings OK (nothing was sent)")

"""``broadcast config``: the effective settings, the core's and every installed gateway's."""

from __future__ import annotations

from broadcast.cli._common import JSON_OPTION


def config(json_: bool = JSON_OPTION) -> None:
    """Print the effective settings (environment, .env, defaults) of broadcast and of every
    installed gateway, secrets masked; a gateway's missing required settings are named."""
    from broadcast.cli._output import Output, table
    from broadcast.config import load_settings
    from broadcast.gateways.settings_view import installed

    values = load_settings().masked()
    gateways = installed()
    data = {**values, "gateways": {g.name: {"problem": g.problem, "settings": {s.env: s.value for s in g.settings}}
                                   for g in gateways}}

    def human() -> None:
        table(None, ["Setting", "Value"], ([f"BROADCAST_{k.upper()}", v] for k, v in values.items()))
        for g in gateways:
            in_use = " (BROADCAST_GATEWAY)" if g.name == values["gateway"] else ""
            state = f"not usable: {g.problem}" if g.problem else "ready"
            table(f"Gateway {g.name}{in_use}: {state}", ["Setting", "Value", "From"],
                  ([s.env, s.value, s.source or "required"] for s in g.settings))

    Output.for_(json_).result(data, human)

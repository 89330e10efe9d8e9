"""``broadcast config``: the effective settings."""

from __future__ import annotations

from broadcast.cli._common import JSON_OPTION


def config(json_: bool = JSON_OPTION) -> None:
    """Print the effective settings (environment, .env, defaults), secrets masked."""
    from broadcast.cli._output import Output
    from broadcast.config import load_settings

    values = load_settings().masked()
    Output.for_(json_).table(None, ["Setting", "Value"], ([f"BROADCAST_{k.upper()}", v] for k, v in values.items()),
                             data=values)

"""Docs that cannot go stale: every setting is in .env.example, every command has help, and the
README's quick start is what CI runs."""

from __future__ import annotations

from pathlib import Path

from broadcast.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_in_env_example():
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    missing = [f"BROADCAST_{name.upper()}" for name in Settings.model_fields if f"BROADCAST_{name.upper()}=" not in text]
    assert missing == []


def test_every_setting_has_a_description():
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -n 4"
    assert test_cmd in readme and test_cmd in ci


def test_every_command_has_help():
    import typer.main

    from broadcast.cli.app import app

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    root = typer.main.get_command(app)
    assert [p for p, c in walk(root, "broadcast") if not (c.help or "").strip()] == []


def test_every_gateway_setting_is_documented_in_env_example():
    from broadcast.gateways import registry

    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    missing = []
    for name in registry.names():
        cls = registry.load(name)
        prefix = cls.settings_class.model_config.get("env_prefix", "")
        for fname, field in cls.settings_class.model_fields.items():
            names = [f"{prefix}{fname}"]
            choices = getattr(field.validation_alias, "choices", None)
            if isinstance(field.validation_alias, str):
                names = [field.validation_alias]
            elif choices:
                names = [c for c in choices if isinstance(c, str) and c.upper().startswith("BROADCAST_")] or names
            env = names[0].upper()
            if f"{env}=" not in text.upper():
                missing.append(env)
    assert missing == []


def test_cli_reference_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_cli_reference", ROOT / "docs" / "make_cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == mod.render(), \
        "docs/cli.md is stale: run python docs/make_cli_reference.py"

"""Shared fixtures. Every test runs with its own data directory and database, no .env file,
and no BROADCAST_* variables from the developer's environment (like llm's isolated user dir)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("BROADCAST_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("BROADCAST_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("BROADCAST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'broadcast.db'}")
    monkeypatch.setenv("BROADCAST_OPERATOR", "tester")
    yield tmp_path


@pytest.fixture
def ws(isolated_env: Path) -> Iterator[object]:
    from broadcast.workspace import Workspace

    workspace = Workspace.open()
    yield workspace
    workspace.close()


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    def json(self) -> object:
        import json

        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<exit {self.exit_code}\nstdout: {self.stdout}\nstderr: {self.stderr}>"


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run ``broadcast ARGS`` in-process; returns exit code, stdout and stderr separately."""
    from typer.testing import CliRunner

    from broadcast.cli.app import app

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(app, [str(a) for a in args], input=input, env=env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run

"""Shared fixtures. Every test runs with its own data directory and database, no .env file,
and no BROADCAST_* variables from the developer's environment (like llm's isolated user dir).

The storage, dispatch and audit tests (marked ``both_stores``) run twice: on SQLite and on PostgreSQL,
each PostgreSQL test in a schema of its own, dropped afterwards. PostgreSQL is
``BROADCAST_TEST_POSTGRES_URL`` or, by default, ``postgresql+psycopg://postgres@127.0.0.1:5432/test``;
where it cannot be reached those runs are skipped, saying why."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.stores import pg_schema, postgres_problem

REPO = Path(__file__).resolve().parent.parent
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_stores`` (``pytestmark = pytest.mark.both_stores`` in a module) run on
    SQLite and on PostgreSQL; the rest on SQLite. The PostgreSQL runs are marked slow: the inner
    loop (``-m "not slow"``) stays on SQLite, the whole suite runs both. The SIGKILL crash test (test_crash) stays on
    SQLite: the PostgreSQL kill path is test_postgres_workers' 4-worker test."""
    if "store" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_stores") is not None
        # the PostgreSQL runs belong to the whole suite (CI): the inner loop (-m "not slow") is SQLite's
        pg = pytest.param("postgresql", marks=pytest.mark.slow)
        metafunc.parametrize("store", ["sqlite", pg] if both else ["sqlite"], indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database URL of this test: a fresh SQLite file, or a fresh PostgreSQL schema."""
    kind = getattr(request, "param", "sqlite")
    tmp_path = request.getfixturevalue("tmp_path")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'broadcast.db'}"
        return
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    with pg_schema() as url:
        yield url


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("BROADCAST_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("BROADCAST_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("BROADCAST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", store)
    monkeypatch.setenv("BROADCAST_OPERATOR", "tester")
    yield tmp_path


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One freshly migrated SQLite database per test session; ``ws`` starts from a copy of it
    instead of running every migration again (the migrations insert no per-database data)."""
    from broadcast.db.engine import make_engine
    from broadcast.db.migrate import ensure_schema

    path = tmp_path_factory.mktemp("template") / "broadcast.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        ensure_schema(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def ws(isolated_env: Path, store: str, request: pytest.FixtureRequest) -> Iterator[object]:
    from broadcast.workspace import Workspace

    if store.startswith("sqlite:///"):
        target = Path(store.removeprefix("sqlite:///"))
        if not target.exists():
            import shutil

            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(request.getfixturevalue("migrated_sqlite"), target)
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
def history(cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Two groups, two members, an opt-out and a sent message, in the test's database; returns ``cli``."""
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_SIMULATOR_LATENCY_MS", "0")
    for args in (("group", "add", "党工委"), ("group", "add", "一支部", "--parent", "党工委"),
                 ("member", "add", "张三", "13800138001", "-g", "一支部"),
                 ("member", "add", "李四", "13800138002", "-g", "一支部"),
                 ("optout", "add", "13800138002"),
                 ("message", "new", "--text", "{name}同志：开会", "--to", "党工委")):
        assert cli(*args).exit_code == 0
    assert cli("message", "approve", "1", env={"BROADCAST_OPERATOR": "leader"}).exit_code == 0
    assert cli("run").exit_code in (0, 3)
    return cli


@pytest.fixture(scope="session")
def cli_command() -> object:
    """The click command tree of ``broadcast``, built once per test process: typer builds it anew on
    every ``CliRunner.invoke`` (reading the signature and type hints of each of 150 commands), which
    was most of an in-process CLI call's time. Click commands hold no state between invocations."""
    import typer.main

    from broadcast.cli.app import app

    return typer.main.get_command(app)


@pytest.fixture
def cli(cli_command: object, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``broadcast ARGS`` in-process; returns exit code, stdout and stderr separately."""
    import typer.testing
    from typer.testing import CliRunner

    from broadcast.cli.app import app

    build = typer.testing._get_command
    monkeypatch.setattr(typer.testing, "_get_command", lambda a: cli_command if a is app else build(a))

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(app, [str(a) for a in args], input=input, env=env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run

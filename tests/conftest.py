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

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BROADCAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_stores`` (``pytestmark = pytest.mark.both_stores`` in a module) run on
    SQLite and on PostgreSQL; the rest on SQLite. The SIGKILL crash test (test_crash) stays on
    SQLite: the PostgreSQL kill path is test_postgres_workers' 4-worker test."""
    if "store" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_stores") is not None
        metafunc.parametrize("store", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True)


_pg_problem: list[str | None] = []


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used for tests here (None: it can)."""
    if not _pg_problem:
        try:
            import psycopg
            from sqlalchemy.engine import make_url

            u = make_url(PG_URL)
            psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                            dbname=u.database, connect_timeout=3).close()
            _pg_problem.append(None)
        except Exception as exc:  # no driver, no server, no database: all mean "skip"
            _pg_problem.append(f"PostgreSQL not available at {PG_URL} ({type(exc).__name__}: {str(exc).strip()[:120]}); "
                               "set BROADCAST_TEST_POSTGRES_URL to run these tests on it")
    return _pg_problem[0]


def _pg_exec(sql: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(PG_URL)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                         dbname=u.database, autocommit=True) as conn:
        conn.execute(sql)


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
    import uuid

    schema = f"bt_{uuid.uuid4().hex[:16]}"
    _pg_exec(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        _pg_exec(f"DROP SCHEMA {schema} CASCADE")


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
def cli() -> Callable[..., CliResult]:
    """Run ``broadcast ARGS`` in-process; returns exit code, stdout and stderr separately."""
    from typer.testing import CliRunner

    from broadcast.cli.app import app

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(app, [str(a) for a in args], input=input, env=env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run

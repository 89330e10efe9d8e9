"""The test databases: PostgreSQL's reachability, and a fresh PostgreSQL schema per use.

PostgreSQL is ``BROADCAST_TEST_POSTGRES_URL`` or, by default,
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; where it cannot be reached the tests that
need it are skipped, saying why (``postgres_problem``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_URL = os.environ.get("BROADCAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

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


def pg_exec(sql: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(PG_URL)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                         dbname=u.database, autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def pg_schema() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL schema, dropped afterwards (call after ``postgres_problem``)."""
    schema = f"bt_{uuid.uuid4().hex[:16]}"
    pg_exec(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        pg_exec(f"DROP SCHEMA {schema} CASCADE")

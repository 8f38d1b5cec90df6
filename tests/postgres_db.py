"""A PostgreSQL for the tests: where it is, whether it answers, and a fresh database per use.

``LOTTERY_TEST_DATABASE_URL`` names the server (``.ci/postgres.sh`` prints it, CI sets it).
When it is set, a server that cannot be reached or used FAILS the tests that need it: the
run was asked to test PostgreSQL, so a skip would hide the failure. When it is unset (a
plain clone), the tests try the address that script uses and skip, with a plain message,
when no server answers there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://lottery@127.0.0.1:54329/lottery"


def server_url() -> str:
    return os.environ.get("LOTTERY_TEST_DATABASE_URL") or DEFAULT_URL


def with_database(url: str, dbname: str) -> str:
    """The same server and user, another database (a URL stays a URL)."""
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + dbname))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=dbname)


def configured() -> bool:
    """Whether the run was told where PostgreSQL is (and so must test it)."""
    return bool(os.environ.get("LOTTERY_TEST_DATABASE_URL"))


@functools.cache
def unreachable_reason() -> str | None:
    """None when the test server answers; otherwise why not, in one line."""
    url = server_url()
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - reported as is: a failure when configured, else a skip
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"PostgreSQL not reachable at {url} ({type(error).__name__}: {first})"
    return None


def require_postgres() -> str:
    """The server URL; else fail the calling test (URL configured) or skip it (not configured)."""
    reason = unreachable_reason()
    if reason and configured():
        pytest.fail(f"LOTTERY_TEST_DATABASE_URL is set, but {reason}", pytrace=False)
    if reason:
        pytest.skip(f"{reason}: set LOTTERY_TEST_DATABASE_URL or run .ci/postgres.sh")
    return server_url()


@contextlib.contextmanager
def fresh_database(prefix: str = "lottery_test") -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards); yields its URL."""
    import psycopg

    base = require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_database(url: str) -> None:
    """Drop the lottery's tables, so that the next store creates a new round from scratch."""
    import psycopg

    from app.store.postgres import TABLES

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)} CASCADE")
        conn.execute("DROP SEQUENCE IF EXISTS lottery_chunk_ids")

"""A configured PostgreSQL that does not answer fails the run; only an unconfigured one skips."""

from __future__ import annotations

import pytest

from devtools.server import free_port
from tests import postgres_db


def closed_port_url() -> str:
    return f"postgresql://lottery@127.0.0.1:{free_port()}/lottery"  # nothing listens there


def test_configured_but_unreachable_is_a_failure(monkeypatch):
    monkeypatch.setenv("LOTTERY_TEST_DATABASE_URL", closed_port_url())
    reason = postgres_db.unreachable_reason.__wrapped__()  # the real attempt, not the session's cache
    assert reason and "Connection refused" in reason
    monkeypatch.setattr(postgres_db, "unreachable_reason", lambda: reason)
    with pytest.raises(pytest.fail.Exception, match="LOTTERY_TEST_DATABASE_URL is set, but PostgreSQL not reachable"):
        postgres_db.require_postgres()


def test_unconfigured_and_unreachable_is_a_plain_skip(monkeypatch):
    monkeypatch.delenv("LOTTERY_TEST_DATABASE_URL", raising=False)
    monkeypatch.setattr(postgres_db, "DEFAULT_URL", closed_port_url())
    reason = postgres_db.unreachable_reason.__wrapped__()
    monkeypatch.setattr(postgres_db, "unreachable_reason", lambda: reason)
    with pytest.raises(pytest.skip.Exception, match="set LOTTERY_TEST_DATABASE_URL or run .ci/postgres.sh"):
        postgres_db.require_postgres()

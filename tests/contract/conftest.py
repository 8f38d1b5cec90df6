"""Say plainly, at the end of the run, whether the PostgreSQL backend was tested."""

from __future__ import annotations

from tests import postgres_db


def pytest_terminal_summary(terminalreporter) -> None:
    if postgres_db.unreachable_reason.cache_info().currsize == 0:
        return  # no PostgreSQL test ran in this session
    reason = postgres_db.unreachable_reason()
    if reason:
        terminalreporter.write_line(f"PostgreSQL backend NOT tested: {reason}", yellow=True, bold=True)
    else:
        terminalreporter.write_line(f"PostgreSQL backend tested against {postgres_db.server_url()}", green=True)

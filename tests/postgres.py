"""A real PostgreSQL for the tests: `GATEWAY_TEST_POSTGRES_URL` when set, else a private cluster
of Debian's server (`loadtest/postgres.py`). Where there is no server the PostgreSQL tests skip
with one line saying what to install; under `CI=true` that is a failure instead: CI must run
them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from loadtest.postgres import PostgresUnavailable, PrivatePostgres, fresh_database
from loadtest.postgres import private_postgres as _private_postgres

__all__ = ["PrivatePostgres", "fresh_database", "private_postgres", "running_postgres"]


def _unavailable(exc: PostgresUnavailable) -> None:
    message = f"PostgreSQL tests need a server: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private server for one test (which may stop and start it)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(_private_postgres())
        except PostgresUnavailable as exc:
            _unavailable(exc)
            raise
        yield server


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A server URL (its `postgres` database) for the whole test session."""
    configured = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    with private_postgres() as server:
        yield server.url

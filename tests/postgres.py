"""A real PostgreSQL for the tests: `GATEWAY_TEST_POSTGRES_URL` when set, else a private cluster
of Debian's server (`/usr/lib/postgresql/<v>/bin`) in a temporary directory, run as the
`postgres` user when the suite runs as root (initdb and the server refuse root). Where there is
no server the PostgreSQL tests skip with one line saying what to install; under `CI=true` that
is a failure instead: CI must run them."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import psycopg
import pytest

__all__ = ["PrivatePostgres", "fresh_database", "private_postgres", "running_postgres"]

_INSTALL = "apt-get install postgresql (Debian's server), or set GATEWAY_TEST_POSTGRES_URL"


def _binaries() -> str | None:
    """The newest `/usr/lib/postgresql/<v>/bin` holding initdb and pg_ctl."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0,
    )
    return os.path.dirname(found[-1]) if found else None


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL tests need a server: {reason}; {_INSTALL}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A cluster of Debian's server in a temporary directory, which a test may stop and start
    again (a server restarted mid-conversation)."""

    def __init__(self, binaries: str) -> None:
        self._binaries = binaries
        self.workdir = tempfile.mkdtemp(prefix="presence-gateway-pg-")
        self._data = os.path.join(self.workdir, "data")
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        init = subprocess.run(
            _as_postgres([f"{binaries}/initdb", "-D", self._data, "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--no-sync"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if init.returncode != 0:
            self.remove()
            _unavailable(f"initdb failed: {init.stderr[-300:]}")

    def start(self) -> None:
        # Durability is not what these tests measure: no fsync keeps the suite fast.
        options = (
            f"-k {self.workdir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        started = subprocess.run(
            _as_postgres([f"{self._binaries}/pg_ctl", "-D", self._data, "-o", options, "-w",
                          "-l", os.path.join(self.workdir, "server.log"), "start"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if started.returncode != 0:
            _unavailable(f"the server did not start: {started.stderr[-300:]}")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: an orderly restart's stop (this server runs without fsync, so `immediate`
        would lose what the OS had not written: only for the end of the session)."""
        subprocess.run(
            _as_postgres([f"{self._binaries}/pg_ctl", "-D", self._data, "-m", mode, "stop"]),
            capture_output=True,
            timeout=120,
        )

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private server, started; stopped and removed after."""
    binaries = _binaries()
    if binaries is None:
        _unavailable("no /usr/lib/postgresql/<version>/bin/pg_ctl")
        raise AssertionError("unreachable")
    server = PrivatePostgres(binaries)
    try:
        server.start()
        yield server
    finally:
        server.stop("immediate")
        server.remove()


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A server URL (its `postgres` database) for the whole test session."""
    configured = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    with private_postgres() as server:
        yield server.url


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"

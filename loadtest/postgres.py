"""A private PostgreSQL for benchmarks and tests: a cluster of Debian's server
(`/usr/lib/postgresql/<v>/bin`) in a temporary directory, run as the `postgres` user when this
runs as root (initdb and the server refuse root). Loopback only."""

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

__all__ = ["PostgresUnavailable", "PrivatePostgres", "fresh_database", "private_postgres"]


class PostgresUnavailable(Exception):
    """No server can be started here; the message says why and what to install."""


_WAL_KEPT_MB = 512
"""A durable server's WAL made ahead and kept for reuse (`min_wal_size`): `bench.py messages`
writes about 25 MB per run (150 MB with its defaults), so this covers three invocations, and
checkpoints free segments for reuse meanwhile; in the temporary directory (RAM where /tmp is
a tmpfs)."""


def _binaries() -> str:
    """The newest `/usr/lib/postgresql/<v>/bin` holding pg_ctl."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0,
    )
    if not found:
        raise PostgresUnavailable(
            "no /usr/lib/postgresql/<version>/bin/pg_ctl; apt-get install postgresql "
            "(Debian's server), or set GATEWAY_TEST_POSTGRES_URL"
        )
    return os.path.dirname(found[-1])


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A server in a temporary directory, which its owner may stop and start again (a server
    restarted mid-conversation). `durable`: fsync on, as in production (benchmarks); off for
    the tests, which measure behaviour, not durability."""

    def __init__(self, durable: bool = False) -> None:
        self._binaries = _binaries()
        self._durable = durable
        self.workdir = tempfile.mkdtemp(prefix="presence-gateway-pg-")
        self._data = os.path.join(self.workdir, "data")
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self.port = _free_port()
        self._wal_ready = False
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        init = subprocess.run(
            _as_postgres([f"{self._binaries}/initdb", "-D", self._data, "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--no-sync"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if init.returncode != 0:
            self.remove()
            raise PostgresUnavailable(f"initdb failed: {init.stderr[-300:]}")

    def start(self) -> None:
        options = (
            f"-k {self.workdir} -p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=300"
        )
        if self._durable:
            options += f" -c min_wal_size={_WAL_KEPT_MB}MB -c max_wal_size={2 * _WAL_KEPT_MB}MB"
        else:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        started = subprocess.run(
            _as_postgres([f"{self._binaries}/pg_ctl", "-D", self._data, "-o", options, "-w",
                          "-l", os.path.join(self.workdir, "server.log"), "start"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if started.returncode != 0:
            raise PostgresUnavailable(f"the server did not start: {started.stderr[-300:]}")
        if self._durable and not self._wal_ready:
            self._ready_wal()

    def _ready_wal(self) -> None:
        """WAL segments made ahead, as on a server that has been running: a new cluster has
        one, and each next one is created on the commit path by writing its 16 MB of zeros
        while every commit waits (a stall of 50-60 ms every 16 MB of WAL measured here, about
        every 8 s at 1,000 sends/s). A running server reuses the segments its checkpoints
        free, up to `min_wal_size`; these are made and freed once, before any measurement."""
        with psycopg.connect(self.url, autocommit=True) as admin:
            for _ in range(_WAL_KEPT_MB // 16):
                admin.execute("SELECT pg_logical_emit_message(false, 'ready', 'wal')")
                admin.execute("SELECT pg_switch_wal()")
            admin.execute("CHECKPOINT")
        self._wal_ready = True

    def stop(self, mode: str = "fast") -> None:
        """`fast`: an orderly restart's stop (without fsync, `immediate` would lose what the OS
        had not written: only for the end)."""
        subprocess.run(
            _as_postgres([f"{self._binaries}/pg_ctl", "-D", self._data, "-m", mode, "stop"]),
            capture_output=True,
            timeout=120,
        )

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(durable: bool = False) -> Iterator[PrivatePostgres]:
    """A private server, started; stopped and removed after."""
    server = PrivatePostgres(durable)
    try:
        server.start()
        yield server
    finally:
        server.stop("immediate")
        server.remove()


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"

"""The SQLite store as operators start it: many processes on one file at the same moment, a
versioned schema, and one clear line (exit 2) when the file cannot be opened."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.store import SqliteStore, StoreOpenError
from gateway.store.migrations import SCHEMA_VERSION
from tests.gateways import start_gateway

ROOT = Path(__file__).resolve().parent.parent

_OPENER = textwrap.dedent(
    """
    import asyncio, sys, time
    from gateway.store import SqliteStore

    async def main() -> None:
        start = float(sys.argv[2])
        time.sleep(max(0.0, start - time.time()))  # every process opens at the same moment
        store = await SqliteStore(sys.argv[1]).open()
        await store.close()

    asyncio.run(main())
    """
)


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    start = time.time() + 1.0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(path), str(start)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            failures.append(err.decode()[-500:])
    assert failures == []
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_a_store_from_before_versions_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE conversations (id TEXT PRIMARY KEY, type TEXT NOT NULL, name TEXT NOT NULL"
        " DEFAULT '', created_by TEXT NOT NULL, created_at TEXT NOT NULL, direct_key TEXT UNIQUE);"
        "CREATE TABLE members (conversation_id TEXT NOT NULL, user_id TEXT NOT NULL,"
        " PRIMARY KEY (conversation_id, user_id));"
    )
    db.close()
    store = await SqliteStore(str(path)).open()
    assert store.schema_version == SCHEMA_VERSION
    await store.close()


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda d: str(d / "missing" / "dir" / "store.sqlite3"), "unable to open"),
        (lambda d: _write(d / "corrupt.sqlite3", b"not a database at all " * 40), "not a database"),
        (lambda d: _newer(d / "newer.sqlite3"), "newer than this gateway"),
    ],
)
async def test_a_store_that_cannot_open_says_which_and_why(
    tmp_path: Path, make: object, cause: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(StoreOpenError, match=cause) as caught:
        await SqliteStore(path).open()
    assert path in str(caught.value)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _newer(path: Path) -> str:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    return str(path)


def test_serve_refuses_an_unopenable_store_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "no" / "such" / "dir" / "store.sqlite3"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--store", str(bad),
         "--jwt-secret", "store-test-secret-0123456789abcdef0123"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [f"presence-gateway: cannot open the store {bad}: unable to open database file"]


async def test_a_locked_store_waits_for_the_lock_then_opens(tmp_path: Path) -> None:
    """Another process is mid-write on a new file (as an instance creating the schema is):
    switching to WAL must wait for it, not fail with `database is locked`."""
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")
    opening = asyncio.create_task(SqliteStore(str(path)).open())
    await asyncio.sleep(0.3)  # the opener is waiting on the lock, not failing
    assert not opening.done()
    holder.execute("COMMIT")
    holder.close()
    store = await asyncio.wait_for(opening, 10)
    assert store.schema_version == SCHEMA_VERSION
    await store.close()


def test_gateways_started_at_the_same_moment_on_one_store_all_serve(
    redis_url: str, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(4) as pool:
        starting = [pool.submit(start_gateway, redis_url, tmp_path, f"gw{n}") for n in range(4)]
        started = [future.result(timeout=60) for future in starting]
    try:
        assert len({gw.url for gw in started}) == 4
        for gw in started:
            assert gw.proc.poll() is None, gw.log()
    finally:
        for gw in started:
            gw.stop()

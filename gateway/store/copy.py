"""`presence-gateway store copy SRC DST`: every record of one store into another (SQLite to
PostgreSQL, or between any two store URLs).

Idempotent and resumable: rows go over in primary-key order, in batches, each batch inserted
with `ON CONFLICT` (a row already there is kept; a member's watermarks and a conversation's
last seq only move forward), so a second run copies nothing new and an interrupted run is
finished by running it again. The gateway may keep serving from SRC meanwhile: run the copy
again after the cut-over to take what arrived in between. At the end the row counts of both
sides are compared.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import psycopg

from gateway.store.base import StoreError
from gateway.store.opening import describe_store, is_postgres, open_store, sqlite_path

__all__ = ["CopyResult", "copy_store"]

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    on_conflict: str
    """What a row already at the destination becomes (`DO NOTHING`, or watermarks forward)."""
    booleans: tuple[str, ...] = ()


_TABLES = (
    _Table(
        "conversations",
        ("id", "type", "name", "created_by", "created_at", "direct_key", "last_seq"),
        ("id",),
        "DO UPDATE SET last_seq = {greatest}(conversations.last_seq, excluded.last_seq)",
    ),
    _Table(
        "members",
        ("conversation_id", "user_id", "delivered_seq", "read_seq", "pinned", "muted"),
        ("conversation_id", "user_id"),
        "DO UPDATE SET delivered_seq = {greatest}(members.delivered_seq, excluded.delivered_seq),"
        " read_seq = {greatest}(members.read_seq, excluded.read_seq),"
        " pinned = excluded.pinned, muted = excluded.muted",
        booleans=("pinned", "muted"),
    ),
    _Table(
        "messages",
        (
            "id",
            "conversation_id",
            "seq",
            "sender_id",
            "client_msg_id",
            "content",
            "content_type",
            "created_at",
            "deleted_at",
        ),
        ("id",),
        "DO UPDATE SET content = excluded.content, deleted_at = excluded.deleted_at"
        " WHERE excluded.deleted_at IS NOT NULL",
    ),  # fmt: skip
    _Table(
        "presence_grants", ("watcher_id", "target_id"), ("watcher_id", "target_id"), "DO NOTHING"
    ),  # fmt: skip
    _Table(
        "revocations",
        ("kind", "id", "expires_at"),
        ("kind", "id"),
        "DO UPDATE SET expires_at = {greatest}(revocations.expires_at, excluded.expires_at)",
    ),
)


@dataclass(frozen=True, slots=True)
class CopyResult:
    copied: dict[str, int]
    """Rows read from the source, by table."""
    counts: dict[str, tuple[int, int]]
    """(source rows, destination rows) at the end, by table."""

    @property
    def complete(self) -> bool:
        return all(dst >= src for src, dst in self.counts.values())


class _Side:
    """One store's database, through its own driver, for whole-table reads and writes."""

    def __init__(self, url: str) -> None:
        self.postgres = is_postgres(url)
        self._db: Any = (
            psycopg.connect(url, autocommit=False)
            if self.postgres
            else sqlite3.connect(sqlite_path(url), timeout=10.0)
        )
        self._mark = "%s" if self.postgres else "?"
        self._greatest = "GREATEST" if self.postgres else "MAX"

    def count(self, table: _Table) -> int:
        return int(self._db.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])

    def batches(self, table: _Table) -> Iterator[list[tuple[Any, ...]]]:
        """Every row in key order, a batch at a time (keyset pagination: no OFFSET)."""
        columns, key = ", ".join(table.columns), ", ".join(table.key)
        after: tuple[Any, ...] | None = None
        while True:
            where = ""
            params: tuple[Any, ...] = ()
            if after is not None:
                marks = ", ".join([self._mark] * len(after))
                where = f" WHERE ({key}) > ({marks})"
                params = after
            rows = self._db.execute(
                f"SELECT {columns} FROM {table.name}{where} ORDER BY {key} LIMIT {_BATCH}", params
            ).fetchall()
            if not rows:
                return
            yield [tuple(_plain(v) for v in row) for row in rows]
            last = rows[-1]
            after = tuple(last[table.columns.index(k)] for k in table.key)

    def insert(self, table: _Table, rows: list[tuple[Any, ...]]) -> None:
        columns = ", ".join(table.columns)
        marks = ", ".join([self._mark] * len(table.columns))
        conflict = table.on_conflict.format(greatest=self._greatest)
        statement = (
            f"INSERT INTO {table.name} ({columns}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(table.key)}) {conflict}"
        )
        flags = [table.columns.index(c) for c in table.booleans]
        converted = [_for(row, flags, self.postgres) for row in rows]
        if self.postgres:
            with self._db.cursor() as cur:
                cur.executemany(statement, converted)
        else:
            self._db.executemany(statement, converted)
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def _plain(value: Any) -> Any:
    """A value as both drivers take it: ids and times as text."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _for(row: tuple[Any, ...], flags: list[int], postgres: bool) -> tuple[Any, ...]:
    """SQLite keeps booleans as 0/1; PostgreSQL wants them as booleans."""
    if not flags:
        return row
    values = list(row)
    for index in flags:
        values[index] = bool(values[index]) if postgres else int(bool(values[index]))
    return tuple(values)


async def copy_store(source: str, destination: str, progress: TextIO = sys.stderr) -> CopyResult:
    """Copy every record of `source` into `destination` (created and migrated if need be).

    Raises:
        StoreOpenError: either store cannot be opened.
        StoreError: a read or write failed (run it again: nothing is copied twice).
    """
    for url in (source, destination):  # the schema, at this gateway's version, on both sides
        store = await open_store(url)
        await store.close()
    return await asyncio.to_thread(_copy_rows, source, destination, progress)


def _copy_rows(source: str, destination: str, progress: TextIO) -> CopyResult:
    src, dst = _Side(source), _Side(destination)
    copied: dict[str, int] = {}
    try:
        for table in _TABLES:
            total = src.count(table)
            done = 0
            _show(progress, table.name, done, total)
            for rows in src.batches(table):
                dst.insert(table, rows)
                done += len(rows)
                _show(progress, table.name, done, total)
            progress.write("\n")
            copied[table.name] = done
        counts = {t.name: (src.count(t), dst.count(t)) for t in _TABLES}
    except (sqlite3.Error, psycopg.Error) as exc:
        raise StoreError(f"copying {describe_store(source)} -> {describe_store(destination)}: "
                         f"{exc}; run it again to resume") from exc  # fmt: skip
    finally:
        src.close()
        dst.close()
    return CopyResult(copied, counts)


def _show(out: TextIO, name: str, done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    out.write(f"\r{name:<16} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}")
    out.flush()

"""SQLite store: one file, one dedicated thread, so no call blocks the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

from gateway.store.base import Conversation, StoreError

__all__ = ["SqliteStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    name TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    direct_key TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS members (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    user_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members(user_id);
"""


class SqliteStore:
    """The default `Store`. All statements run on one worker thread, in order."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> SqliteStore:
        await self._run(self._open)
        return self

    def _open(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        self._db = db

    async def _run(self, work: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def create_conversation(
        self, kind: str, creator: uuid.UUID, member_ids: list[uuid.UUID], name: str
    ) -> tuple[Conversation, bool]:
        members = sorted({creator, *member_ids}, key=str)
        if kind == "direct" and len(members) != 2:
            raise StoreError("a direct conversation has exactly two members")
        direct_key = ":".join(str(m) for m in members) if kind == "direct" else None
        return await self._run(lambda: self._create(kind, creator, members, name, direct_key))

    def _create(
        self,
        kind: str,
        creator: uuid.UUID,
        members: list[uuid.UUID],
        name: str,
        direct_key: str | None,
    ) -> tuple[Conversation, bool]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if direct_key is not None:
                row = db.execute(
                    "SELECT id FROM conversations WHERE direct_key = ?", (direct_key,)
                ).fetchone()
                if row is not None:
                    db.execute("COMMIT")
                    existing = self._get(uuid.UUID(row[0]))
                    assert existing is not None
                    return existing, False
            conv = Conversation(
                id=uuid.uuid4(),
                type=kind,
                name=name,
                member_ids=tuple(members),
                created_by=creator,
                created_at=datetime.now(UTC),
            )
            db.execute(
                "INSERT INTO conversations (id, type, name, created_by, created_at, direct_key)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    str(conv.id),
                    kind,
                    name,
                    str(creator),
                    conv.created_at.isoformat(),
                    direct_key,
                ),
            )
            db.executemany(
                "INSERT INTO members (conversation_id, user_id) VALUES (?, ?)",
                [(str(conv.id), str(m)) for m in members],
            )
            db.execute("COMMIT")
            return conv, True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def get_conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        return await self._run(lambda: self._get(conversation_id))

    def _get(self, conversation_id: uuid.UUID) -> Conversation | None:
        row = self.db.execute(
            "SELECT type, name, created_by, created_at FROM conversations WHERE id = ?",
            (str(conversation_id),),
        ).fetchone()
        if row is None:
            return None
        members = self.db.execute(
            "SELECT user_id FROM members WHERE conversation_id = ? ORDER BY user_id",
            (str(conversation_id),),
        ).fetchall()
        return Conversation(
            id=conversation_id,
            type=row[0],
            name=row[1],
            member_ids=tuple(uuid.UUID(m[0]) for m in members),
            created_by=uuid.UUID(row[2]),
            created_at=datetime.fromisoformat(row[3]),
        )

    async def user_conversation_ids(self, user_id: uuid.UUID) -> set[uuid.UUID]:
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT conversation_id FROM members WHERE user_id = ?", (str(user_id),)
            ).fetchall()
        )
        return {uuid.UUID(r[0]) for r in rows}

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._executor.shutdown(wait=True)

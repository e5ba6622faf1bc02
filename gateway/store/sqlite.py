"""SQLite store: one file, one dedicated thread, so no call blocks the event loop.

The file is watched: deleted or replaced under a running instance, SQLite would go on writing
to the deleted inode and acknowledging it, and a new instance would create an empty store beside
it. So every write transaction checks the file is still the one opened before its writes count
as durable, a watch looks every second for `/readyz`, and opening refuses to create a store at a
path whose deleted file another process still holds.

Any number of processes on one host may open the same file at the same moment (a fleet
restart, a compose `up`): each waits for the others' locks up to a busy timeout, WAL is switched
on by whichever gets there first, and the migrations run in one immediate transaction, so each
is applied exactly once. Instances on several hosts need a network store (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.metrics import Latency
from gateway.store.base import (
    Conversation,
    ConversationSummary,
    NotAMember,
    NotFound,
    Receipt,
    Revoked,
    StoredMessage,
    StoreError,
    StoreOpenError,
    check_flag,
    new_conversation,
    new_message,
    own_message,
    retried,
)
from gateway.store.group_commit import GroupCommit, Outcome, Work
from gateway.store.migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore"]

log = logging.getLogger(__name__)

_WATCH_INTERVAL = 1.0
"""Seconds between looks at the store file when nothing is written."""

_T = TypeVar("_T")

_BUSY_TIMEOUT = 10.0
"""Seconds a statement waits for another process's lock before the store gives up."""

WAL_LIMIT = 16 << 20
"""Bytes of write-ahead log past which a write transaction ends with a checkpoint that
truncates it: SQLite's automatic checkpoints copy the log back but never shrink the file, so a
burst would leave a log of its size for good."""


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: one writer at a time across every process on the file; committed
    when the block ends (a `return` included), rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_MESSAGE_COLUMNS = (
    "id, conversation_id, seq, sender_id, client_msg_id, content, content_type, created_at"
)
_LIVE = "deleted_at IS NULL"
"""Messages not deleted: the ones history, receipts and summaries see."""


def _failed(exc: Exception) -> Outcome:
    """A write or read that raised: SQLite's errors as the store's, the others as they are."""
    return False, StoreError(str(exc)) if isinstance(exc, sqlite3.Error) else exc


def _message(row: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        id=uuid.UUID(row[0]),
        conversation_id=uuid.UUID(row[1]),
        seq=int(row[2]),
        sender_id=uuid.UUID(row[3]),
        client_msg_id=row[4],
        content=row[5],
        content_type=row[6],
        created_at=datetime.fromisoformat(row[7]),
        deleted=len(row) > 8 and row[8] is not None,
    )


class SqliteStore:
    """The default `Store`. All statements run on one worker thread, in order."""

    def __init__(
        self, path: str, latency: Latency | None = None, wal_limit: int = WAL_LIMIT
    ) -> None:
        """`latency`: where each call's time (queue, thread hop and work) is observed;
        `wal_limit`: the log size that triggers a truncating checkpoint."""
        self._path = path
        self._wal = f"{path}-wal"
        self._identity: tuple[int, int] | None = None
        """(device, inode) of the file opened: another one at the path is not this store."""
        self._lost: str | None = None
        """Why this store can never be trusted again (its file deleted or replaced)."""
        self._failing: str | None = None
        """Why the last write transaction failed, until one succeeds."""
        self._wal_limit = wal_limit
        self._latency = latency
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None
        self._writes: GroupCommit[Work] = GroupCommit(
            lambda works: self._run(functools.partial(self._transaction, works))
        )
        # Reads that arrive together (a connect storm's membership reads) share a thread hop.
        self._reads: GroupCommit[Work] = GroupCommit(
            lambda works: self._run(functools.partial(self._each, works))
        )

    async def open(self) -> SqliteStore:
        """Open (creating it if need be) and migrate.

        Raises:
            StoreOpenError: the file cannot be opened or migrated; the message names the file
                and the cause, fit for one line.
        """
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        except sqlite3.Error as exc:
            self._executor.shutdown(wait=False)
            raise StoreOpenError(f"cannot open the store {self._path}: {exc}") from exc
        return self

    def _open(self) -> None:
        if not os.path.exists(self._path):
            holder = _holder_of_deleted(self._path)
            if holder is not None:
                raise sqlite3.OperationalError(
                    f"the file was deleted while process {holder} still uses it (still in use); "
                    "restore the file from a backup or stop that process first, rather than "
                    "start a second, empty store beside it"
                )
        db = sqlite3.connect(
            self._path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT * 1000)}")
            self._enable_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
            db.execute("PRAGMA foreign_keys=ON")
            self._migrate(db)
            status = os.stat(self._path)
        except BaseException:
            db.close()
            raise
        self._identity = (status.st_dev, status.st_ino)
        self._db = db

    @staticmethod
    def _enable_wal(db: sqlite3.Connection) -> None:
        # Changing the journal mode takes an exclusive lock and does not always wait through
        # the busy handler: retry until the deadline while another process holds the file.
        deadline = time.monotonic() + _BUSY_TIMEOUT
        while True:
            try:
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal mode is {mode}, WAL could not be set")

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        with _immediate(db):  # one migrator at a time; the others wait, then skip
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {version} is newer than this gateway's {SCHEMA_VERSION}"
                )
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    async def _run(self, work: Callable[[], _T]) -> _T:
        started = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        finally:
            if self._latency is not None:
                self._latency.observe(time.monotonic() - started)

    async def _write(self, work: Callable[[], _T], owner: Hashable = None) -> _T:
        """`work` on the store's thread, in the next write transaction (owners take turns)."""
        result: _T = await self._writes.submit(work, owner)
        return result

    async def _read(self, work: Callable[[], _T], owner: Hashable = None) -> _T:
        """`work` on the store's thread, with the reads that arrived together."""
        result: _T = await self._reads.submit(work, owner)
        return result

    def _transaction(self, works: list[Work]) -> list[Outcome]:
        """Writes in one transaction (one writer at a time across every process on the file:
        seqs stay gap-free and unique), each in a savepoint: a write that fails leaves nothing
        and fails alone."""
        db = self.db
        self._refuse_if_lost()
        outcomes: list[Outcome] = []
        try:
            with _immediate(db):
                for work in works:
                    db.execute("SAVEPOINT write")
                    try:
                        outcomes.append((True, work()))
                    except Exception as exc:
                        db.execute("ROLLBACK TO write")
                        outcomes.append(_failed(exc))
                    db.execute("RELEASE write")
        except sqlite3.Error as exc:
            self._failing = str(exc)
            raise
        # Committed, but to the file opened: durable only if it is still the one at the path.
        self._look()
        self._refuse_if_lost()
        self._failing = None
        self._truncate_wal(db)
        return outcomes

    def _look(self) -> None:
        """Note (once, with an error in the log) that the file was deleted or replaced."""
        if self._lost is not None or self._identity is None:
            return
        try:
            status = os.stat(self._path)
            lost = (
                None
                if (status.st_dev, status.st_ino) == self._identity
                else f"the store file {self._path} was replaced by another file"
            )
        except FileNotFoundError:
            lost = f"the store file {self._path} was deleted"
        if lost is not None:
            self._lost = lost
            log.error(
                "%s while this instance uses it: every store call now answers unavailable; "
                "restore the file and restart the instance",
                lost,
                extra={"event": "store_lost"},
            )

    def _refuse_if_lost(self) -> None:
        if self._lost is not None:
            raise StoreError(f"store unavailable: {self._lost}")

    def trouble(self) -> str | None:
        """Why the store cannot be trusted now (file deleted or replaced, writes failing)."""
        if self._lost is not None:
            return self._lost
        if self._failing is not None:
            return f"writes failing: {self._failing}"
        return None

    async def watch(self) -> None:
        """Until cancelled: look at the file every second, so an idle instance notices too."""
        while True:
            await asyncio.sleep(_WATCH_INTERVAL)
            self._look()

    def _truncate_wal(self, db: sqlite3.Connection) -> None:
        """Past the limit, checkpoint and truncate the log, without waiting: while another
        process reads or writes, this is tried again after the next transaction."""
        try:
            if os.stat(self._wal).st_size <= self._wal_limit:
                return
        except FileNotFoundError:
            return
        db.execute("PRAGMA busy_timeout=0")
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:  # busy: the next transaction tries again
            pass
        finally:
            db.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT * 1000)}")

    def _each(self, works: list[Work]) -> list[Outcome]:
        """Reads, one after the other, each with its own outcome (none from a lost file)."""
        self._refuse_if_lost()
        outcomes: list[Outcome] = []
        for work in works:
            try:
                outcomes.append((True, work()))
            except Exception as exc:
                outcomes.append(_failed(exc))
        return outcomes

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def create_conversation(
        self, kind: str, creator: uuid.UUID, member_ids: list[uuid.UUID], name: str
    ) -> tuple[Conversation, bool]:
        conv, direct_key = new_conversation(kind, creator, member_ids, name)
        return await self._write(lambda: self._create(conv, direct_key), creator)

    def _create(self, conv: Conversation, direct_key: str | None) -> tuple[Conversation, bool]:
        db = self.db
        if direct_key is not None:
            row = db.execute(
                "SELECT id FROM conversations WHERE direct_key = ?", (direct_key,)
            ).fetchone()
            if row is not None:
                existing = self._get(uuid.UUID(row[0]))
                assert existing is not None
                return existing, False
        db.execute(
            "INSERT INTO conversations (id, type, name, created_by, created_at, direct_key)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(conv.id),
                conv.type,
                conv.name,
                str(conv.created_by),
                conv.created_at.isoformat(),
                direct_key,
            ),
        )
        db.executemany(
            "INSERT INTO members (conversation_id, user_id) VALUES (?, ?)",
            [(str(conv.id), str(m)) for m in conv.member_ids],
        )
        return conv, True

    async def get_conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        return await self._read(lambda: self._get(conversation_id))

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

    async def user_conversations(self, user_id: uuid.UUID) -> dict[uuid.UUID, int]:
        rows = await self._read(
            lambda: self.db.execute(
                "SELECT m.conversation_id, c.last_seq FROM members m"
                " JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ?",
                (str(user_id),),
            ).fetchall()
        )
        return {uuid.UUID(r[0]): int(r[1]) for r in rows}

    async def send_message(
        self,
        conversation_id: uuid.UUID,
        sender_id: uuid.UUID,
        client_msg_id: str,
        content: str,
        content_type: str,
    ) -> tuple[StoredMessage, bool]:
        return await self._write(
            lambda: self._send(conversation_id, sender_id, client_msg_id, content, content_type),
            sender_id,
        )

    def _send(
        self,
        conversation_id: uuid.UUID,
        sender_id: uuid.UUID,
        client_msg_id: str,
        content: str,
        content_type: str,
    ) -> tuple[StoredMessage, bool]:
        db = self.db
        # Membership first: a non-member learns nothing of the sender's keys.
        self._check_member(conversation_id, sender_id)
        row = db.execute(
            f"SELECT {_MESSAGE_COLUMNS}, deleted_at FROM messages"
            " WHERE sender_id = ? AND client_msg_id = ?",
            (str(sender_id), client_msg_id),
        ).fetchone()
        if row is not None:  # a retry: the stored message, nothing new
            return retried(_message(row), conversation_id, content, content_type), False
        (seq,) = db.execute(
            "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
            (str(conversation_id),),
        ).fetchone()
        msg = new_message(
            conversation_id, sender_id, client_msg_id, content, content_type, seq=int(seq)
        )
        db.execute(
            f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(msg.id),
                str(conversation_id),
                msg.seq,
                str(sender_id),
                client_msg_id,
                content,
                content_type,
                msg.created_at.isoformat(),
            ),
        )
        # The sender has read (and received) their own message.
        db.execute(
            "UPDATE members SET delivered_seq = MAX(delivered_seq, ?),"
            " read_seq = MAX(read_seq, ?) WHERE conversation_id = ? AND user_id = ?",
            (msg.seq, msg.seq, str(conversation_id), str(sender_id)),
        )
        return msg, True

    def _member_message(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage:
        """The message, when `user_id` is a member of its conversation; NotAMember otherwise."""
        self._check_member(conversation_id, user_id)
        row = self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            f" WHERE id = ? AND conversation_id = ? AND {_LIVE}",
            (str(message_id), str(conversation_id)),
        ).fetchone()
        if row is None:
            raise NotFound("no such message in this conversation")
        return _message(row)

    def _check_member(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> None:
        if (
            self.db.execute(
                "SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?",
                (str(conversation_id), str(user_id)),
            ).fetchone()
            is None
        ):
            raise NotAMember("not a member of this conversation")

    async def conversation_summaries(self, user_id: uuid.UUID) -> list[ConversationSummary]:
        return await self._read(lambda: self._summaries(user_id), user_id)

    def _summaries(self, user_id: uuid.UUID) -> list[ConversationSummary]:
        rows = self.db.execute(
            "SELECT c.id, c.type, c.name, c.last_seq, m.read_seq, m.pinned, m.muted"
            " FROM members m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.user_id = ?",
            (str(user_id),),
        ).fetchall()
        summaries = []
        for row in rows:
            last = self.db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
                f" AND {_LIVE} ORDER BY seq DESC LIMIT 1",
                (row[0],),
            ).fetchone()
            summaries.append(
                ConversationSummary(
                    id=uuid.UUID(row[0]),
                    type=row[1],
                    name=row[2],
                    last_message=_message(last) if last is not None else None,
                    last_seq=int(row[3]),
                    read_seq=int(row[4]),
                    is_pinned=bool(row[5]),
                    is_muted=bool(row[6]),
                )
            )
        return summaries

    async def set_flag(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, flag: str, value: bool
    ) -> None:
        check_flag(flag)

        def update() -> None:
            cursor = self.db.execute(
                f"UPDATE members SET {flag} = ? WHERE conversation_id = ? AND user_id = ?",
                (int(value), str(conversation_id), str(user_id)),
            )
            if cursor.rowcount == 0:
                raise NotAMember("not a member of this conversation")

        await self._write(update, user_id)

    async def delete_message(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage:
        return await self._write(
            lambda: self._delete(conversation_id, user_id, message_id), user_id
        )

    def _delete(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage:
        db = self.db
        try:
            msg = self._member_message(conversation_id, user_id, message_id)
        except NotAMember:  # to a non-member, as if the message did not exist
            raise NotFound("no such message in a conversation of yours") from None
        own_message(msg, user_id)
        # The row stays, content gone: its seq is never reused and its key answers the
        # deletion to a retry, for ever.
        db.execute(
            "UPDATE messages SET content = '', deleted_at = ? WHERE id = ?",
            (datetime.now(UTC).isoformat(), str(message_id)),
        )
        return msg

    async def list_messages(
        self,
        conversation_id: uuid.UUID,
        limit: int,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[StoredMessage], bool]:
        return await self._read(lambda: self._list(conversation_id, limit, before_seq, after_seq))

    def _list(
        self,
        conversation_id: uuid.UUID,
        limit: int,
        before_seq: int | None,
        after_seq: int | None,
    ) -> tuple[list[StoredMessage], bool]:
        select = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND {_LIVE}"
        if after_seq is not None:
            rows = self.db.execute(
                f"{select} AND seq > ? ORDER BY seq ASC LIMIT ?",
                (str(conversation_id), after_seq, limit + 1),
            ).fetchall()
            return [_message(r) for r in rows[:limit]], len(rows) > limit
        bound = before_seq if before_seq is not None else 2**62
        rows = self.db.execute(
            f"{select} AND seq < ? ORDER BY seq DESC LIMIT ?",
            (str(conversation_id), bound, limit + 1),
        ).fetchall()
        page = [_message(r) for r in reversed(rows[:limit])]
        return page, len(rows) > limit

    async def receipt(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID, read: bool
    ) -> tuple[Receipt, StoredMessage]:
        return await self._write(
            lambda: self._receipt(conversation_id, user_id, message_id, read), user_id
        )

    def _receipt(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID, read: bool
    ) -> tuple[Receipt, StoredMessage]:
        db = self.db
        msg = self._member_message(conversation_id, user_id, message_id)
        before = db.execute(
            "SELECT delivered_seq, read_seq FROM members WHERE conversation_id = ? AND user_id = ?",
            (str(conversation_id), str(user_id)),
        ).fetchone()
        delivered = max(int(before[0]), msg.seq)
        read_seq = max(int(before[1]), msg.seq) if read else int(before[1])
        moved = (delivered, read_seq) != (int(before[0]), int(before[1]))
        if moved:
            db.execute(
                "UPDATE members SET delivered_seq = ?, read_seq = ?"
                " WHERE conversation_id = ? AND user_id = ?",
                (delivered, read_seq, str(conversation_id), str(user_id)),
            )
        return Receipt(conversation_id, user_id, delivered, read_seq, moved), msg

    async def unread(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> tuple[int, int]:
        row = await self._read(
            lambda: self.db.execute(
                "SELECT c.last_seq, m.read_seq FROM members m"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE m.conversation_id = ? AND m.user_id = ?",
                (str(conversation_id), str(user_id)),
            ).fetchone()
        )
        if row is None:
            raise NotAMember("not a member of this conversation")
        last_seq, read_seq = int(row[0]), int(row[1])
        return max(0, last_seq - read_seq), last_seq

    async def visible_users(
        self, watcher: uuid.UUID, targets: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not targets:
            return set()
        wanted = [str(t) for t in targets]
        marks = ",".join("?" * len(wanted))
        rows = await self._read(
            lambda: self.db.execute(
                "SELECT other.user_id FROM members mine JOIN members other"
                " ON other.conversation_id = mine.conversation_id"
                f" WHERE mine.user_id = ? AND other.user_id IN ({marks})"
                " UNION SELECT target_id FROM presence_grants"
                f" WHERE watcher_id = ? AND target_id IN ({marks})",
                (str(watcher), *wanted, str(watcher), *wanted),
            ).fetchall()
        )
        return {uuid.UUID(row[0]) for row in rows}

    async def add_revocations(self, revoked: Collection[Revoked]) -> None:
        rows = [(r.kind, r.id, r.expires_at) for r in revoked]

        def write() -> None:
            self.db.executemany(
                "INSERT INTO revocations (kind, id, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, id) DO UPDATE"
                " SET expires_at = MAX(expires_at, excluded.expires_at)",
                rows,
            )
            self.db.execute("DELETE FROM revocations WHERE expires_at < ?", (time.time(),))

        await self._write(write)

    async def live_revocations(self, now: float) -> list[Revoked]:
        rows = await self._read(
            lambda: self.db.execute(
                "SELECT kind, id, expires_at FROM revocations WHERE expires_at >= ?", (now,)
            ).fetchall()
        )
        return [Revoked(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._executor.shutdown(wait=True)


def _holder_of_deleted(path: str) -> int | None:
    """A process that still holds `path` open though it was deleted (Linux: its descriptor
    links to "<path> (deleted)"), or None; None too where /proc cannot tell."""
    target = os.path.join(os.path.realpath(os.path.dirname(path) or "."), os.path.basename(path))
    deleted = f"{target} (deleted)"
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == deleted:
                    return int(pid)
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return None

"""PostgreSQL store: the system of record for instances on many hosts (psycopg 3, a pool).

The same semantics as the SQLite store, with any number of writers on any number of hosts:

- a conversation's `seq` is its counter row moved by `UPDATE ... RETURNING` in the transaction
  that inserts the message: the row lock orders the writers of one conversation, a rolled-back
  send leaves no gap, and there is no global sequence whose late commits readers would have to
  wait for;
- idempotency on (sender, `client_msg_id`) is a unique constraint: two instances racing with
  the same retry insert one row, the other's transaction rolls back (its seq with it) and
  answers the stored message;
- watermarks only move forward (`GREATEST`);
- migrations are versioned in `schema_migrations` and applied under an advisory lock, so any
  number of instances may start at once on an empty database.

Writes of different users run on different pooled connections at once: the database sets the
pace. Connection failures are the store's `StoreError` (requests answer `unavailable`), mark the
store unready until a call succeeds again, and the pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Collection
from typing import Any

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
from gateway.store.group_commit import GroupCommit, Outcome
from gateway.store.postgres_migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x70726573  # "pres": one migrator at a time across every host
_CONNECT_TIMEOUT = 5
_WATCH_INTERVAL = 1.0
_ANSWER_BUDGETS = 5
"""A call's work on a pooled connection may take this many budgets; a connection past it is
closed. (The request was answered `unavailable` long before: this frees the connection.)"""
_MESSAGE_COLUMNS = (
    "id, conversation_id, seq, sender_id, client_msg_id, content, content_type, created_at,"
    " deleted_at"
)
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)


_SEND = f"""
WITH member AS (
    SELECT 1 FROM members WHERE conversation_id = %(c)s AND user_id = %(u)s
), existing AS (
    SELECT {_MESSAGE_COLUMNS} FROM messages WHERE sender_id = %(u)s AND client_msg_id = %(k)s
), counter AS (
    UPDATE conversations SET last_seq = last_seq + 1
    WHERE id = %(c)s AND EXISTS (SELECT 1 FROM member) AND NOT EXISTS (SELECT 1 FROM existing)
    RETURNING last_seq
), inserted AS (
    INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, content,
                          content_type, created_at)
    SELECT %(id)s, %(c)s, last_seq, %(u)s, %(k)s, %(content)s, %(type)s, %(at)s FROM counter
    ON CONFLICT (sender_id, client_msg_id) DO NOTHING
    RETURNING seq
), watermark AS (
    UPDATE members SET delivered_seq = GREATEST(delivered_seq, i.seq),
                       read_seq = GREATEST(read_seq, i.seq)
    FROM inserted i WHERE conversation_id = %(c)s AND user_id = %(u)s
)
SELECT EXISTS (SELECT 1 FROM member), (SELECT seq FROM inserted),
       CASE WHEN EXISTS (SELECT 1 FROM counter)
            THEN 1 / (SELECT count(*)::int FROM inserted) ELSE 0 END,
       e.*
FROM (SELECT 1) AS one LEFT JOIN existing AS e ON true
"""
"""A send in one statement, so one round trip (autocommit: the statement is the transaction).
The sender's membership is checked first; a stored key answers the stored message; else the
conversation's counter row moves (its lock orders the writers of one conversation) and the
message takes that seq; the sender's own watermarks move with it. A retry racing another with
the same key finds the key taken at insert time, after its snapshot: it must not spend the seq
it took, so the statement divides by the zero rows it inserted, fails as a whole (the counter
rolls back) and the caller reads the stored message."""


_SEND_BATCH = (
    "SELECT * FROM send_batch(%(nth)s, %(id)s, %(c)s, %(u)s, %(k)s, %(content)s, %(type)s, %(at)s)"
)
"""A batch of sends in one call of `send_batch` (schema version 2), so one round trip and one
transaction (autocommit), each send answered as `_SEND` would answer it alone, in the batch's
order: a conversation's fresh sends take the next seqs in that order and its counter row moves
once. The counter rows are locked in one order (by id) before any moves, so two instances'
batches never deadlock. A repeat of a key inside the batch is not for this call (the caller
runs such a batch one send at a time); a key taken by another transaction after this one's
snapshot inserts nothing, and the call fails as a whole, as `_SEND` does, for the caller to
run the batch one send at a time. A batch of one keeps `_SEND`: for a single send the batch
cost the server about twice as much (store alone, sequential sends, 2026-12-03: server CPU
per send 453-480 against 190-263 us).

The function, not a statement, so its plan is made once per connection (`plan_cache_mode`
set on it) and still reaches every row through an index whatever the statistics (`LATERAL
... LIMIT 1` probes, counter rows by `= ANY`). As a statement the planner either replanned
it on every call (0.6-0.7 ms of planning, more than its run) or, as first written with joins,
kept a plan made while the tables were young and unanalyzed that read `messages`, `members`
and `conversations` whole on every batch (3,245 messages: 1.3 of a batch's 1.8 ms). Store
alone, batches of 5, server CPU per send: whole-table plan 465-495 us, replanned 290-372 us,
kept plan 145-180 us."""


_MAX_BATCH = 128
"""Sends per batch: bounds how long the first of a batch waits for the last."""
_SHARE = 16
"""One sender's sends per batch at most: one user's backlog never fills everyone's batch."""


def _message(row: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        id=row[0],
        conversation_id=row[1],
        seq=int(row[2]),
        sender_id=row[3],
        client_msg_id=row[4],
        content=row[5],
        content_type=row[6],
        created_at=row[7],
        deleted=row[8] is not None,
    )


def safe_url(url: str) -> str:
    """The URL without its password, for logs and error lines."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    host, port, db = parts.get("host", ""), parts.get("port", ""), parts.get("dbname", "")
    return f"postgresql://{host}{':' + str(port) if port else ''}/{db}"


class PostgresStore:
    """The `Store` on PostgreSQL."""

    def __init__(
        self,
        *,
        url: str,
        latency: Latency | None = None,
        pool_size: int = 10,
        password: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        """`password` overrides the URL's (kept off the command line); `timeout`: how long a
        call waits for a pooled connection before it is answered `unavailable`."""
        extra = {"password": password} if password else {}
        self._conninfo = make_conninfo(url, connect_timeout=_CONNECT_TIMEOUT, **extra)
        self._name = safe_url(url)
        self._latency = latency
        self._timeout = timeout
        self._pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True},
            timeout=timeout,
            name="presence-gateway-store",
            check=self._check_if_suspect,
        )
        self._generation = 0
        """Bumped whenever the server was found unreachable: pooled connections from before
        may be dead."""
        self._verified: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        self._failing: str | None = None
        self._sends: GroupCommit[dict[str, Any]] = GroupCommit(
            self._commit_sends, max_batch=_MAX_BATCH, share=_SHARE
        )

    async def open(self) -> PostgresStore:
        """Connect and migrate.

        Raises:
            StoreOpenError: unreachable, refused, or a schema newer than this gateway's; the
                message names the host and database and the cause, fit for one line.
        """
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreOpenError(f"cannot open the store {self._name}: {_one_line(exc)}") from exc
        try:
            async with conn:
                await _migrate(conn)
        except (psycopg.Error, StoreError) as exc:
            raise StoreOpenError(f"cannot open the store {self._name}: {_one_line(exc)}") from exc
        await self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT * 2)
        return self

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            cur = await conn.execute("SELECT max(version) FROM schema_migrations")
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def _check_if_suspect(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The pool's check on checkout: a round trip only for a connection not used since
        the server was last found unreachable (after a restart or a reset path every idle
        connection is dead: the pool replaces them here instead of failing the next calls)."""
        if self._verified.get(conn) == self._generation:
            return
        await AsyncConnectionPool.check_connection(conn)
        self._verified[conn] = self._generation

    def _unreachable(self, cause: str) -> None:
        self._failing = cause
        self._generation += 1

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; its failures as the store's, timed in the store latency."""
        started = time.monotonic()
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                try:
                    async with asyncio.timeout(self._timeout * _ANSWER_BUDGETS):
                        yield conn
                except TimeoutError:
                    # No answer (a blackholed path, a stuck server): what it owes would arrive
                    # out of turn, if ever. Closed, the pool replaces it instead of waiting on a
                    # cancellation that cannot get through either.
                    await conn.close()
                    raise
            self._failing = None
        except _UNAVAILABLE as exc:
            self._unreachable(_one_line(exc))
            raise StoreError(f"store unavailable: {self._failing}") from exc
        except TimeoutError as exc:
            self._unreachable("no answer in time")
            raise StoreError("store unavailable: no answer in time") from exc
        except PoolTimeout as exc:
            # Every pooled connection busy (load), or none can be made (then the watch, on a
            # connection of its own, tells /readyz): unavailable for this call either way.
            raise StoreError(f"store busy: {_one_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreError(_one_line(exc)) from exc
        finally:
            if self._latency is not None:
                self._latency.observe(time.monotonic() - started)

    def trouble(self) -> str | None:
        if self._failing is not None:
            return f"unreachable: {self._failing}"
        return None

    async def watch(self) -> None:
        """Until cancelled: a cheap query every second on a connection of its own (a busy
        pool is load, not an outage), so an idle instance notices too, and a busy one does
        not take load for an outage."""
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                await asyncio.sleep(_WATCH_INTERVAL)
                try:
                    async with asyncio.timeout(self._timeout):
                        if conn is None or conn.closed:
                            conn = await psycopg.AsyncConnection.connect(
                                self._conninfo, autocommit=True
                            )
                        await conn.execute("SELECT 1")
                    self._failing = None
                except (psycopg.Error, TimeoutError) as exc:
                    self._unreachable(_one_line(exc) if str(exc) else "no answer in time")
                    log.warning("store %s unavailable: %s", self._name, self._failing)
                    if conn is not None:
                        await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()

    # Conversations

    async def create_conversation(
        self, kind: str, creator: uuid.UUID, member_ids: list[uuid.UUID], name: str
    ) -> tuple[Conversation, bool]:
        conv, direct_key = new_conversation(kind, creator, member_ids, name)
        async with self._connection() as conn:
            if direct_key is not None:
                existing = await self._direct(conn, direct_key)
                if existing is not None:
                    return existing, False
            async with conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO conversations (id, type, name, created_by, created_at,"
                    " direct_key) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (direct_key) DO NOTHING RETURNING id",
                    (conv.id, kind, name, creator, conv.created_at, direct_key),
                )
                if await cur.fetchone() is None:  # another instance created the pair just now
                    created = False
                else:
                    created = True
                    async with conn.cursor() as members_cur:
                        await members_cur.executemany(
                            "INSERT INTO members (conversation_id, user_id) VALUES (%s, %s)",
                            [(conv.id, m) for m in conv.member_ids],
                        )
            if not created:
                assert direct_key is not None
                raced = await self._direct(conn, direct_key)
                assert raced is not None
                return raced, False
        return conv, True

    async def _direct(
        self, conn: psycopg.AsyncConnection[Any], direct_key: str
    ) -> Conversation | None:
        cur = await conn.execute(
            "SELECT id FROM conversations WHERE direct_key = %s", (direct_key,)
        )
        row = await cur.fetchone()
        return None if row is None else await self._get(conn, row[0])

    async def get_conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        async with self._connection() as conn:
            return await self._get(conn, conversation_id)

    async def _get(
        self, conn: psycopg.AsyncConnection[Any], conversation_id: uuid.UUID
    ) -> Conversation | None:
        cur = await conn.execute(
            "SELECT c.type, c.name, c.created_by, c.created_at,"
            " array(SELECT user_id FROM members m WHERE m.conversation_id = c.id"
            " ORDER BY user_id::text)"
            " FROM conversations c WHERE c.id = %s",
            (conversation_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        return Conversation(
            id=conversation_id,
            type=row[0],
            name=row[1],
            member_ids=tuple(row[4]),
            created_by=row[2],
            created_at=row[3],
        )

    async def user_conversations(self, user_id: uuid.UUID) -> dict[uuid.UUID, int]:
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT m.conversation_id, c.last_seq FROM members m"
                " JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = %s",
                (user_id,),
            )
            return {row[0]: int(row[1]) for row in await cur.fetchall()}

    async def conversation_summaries(self, user_id: uuid.UUID) -> list[ConversationSummary]:
        columns = ", ".join(f"l.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT c.id, c.type, c.name, c.last_seq, m.read_seq, m.pinned, m.muted, {columns}"
                " FROM members m JOIN conversations c ON c.id = m.conversation_id"
                " LEFT JOIN LATERAL (SELECT * FROM messages x WHERE x.conversation_id = c.id"
                " AND x.deleted_at IS NULL ORDER BY x.seq DESC LIMIT 1) l ON true"
                " WHERE m.user_id = %s",
                (user_id,),
            )
            rows = await cur.fetchall()
        return [
            ConversationSummary(
                id=row[0],
                type=row[1],
                name=row[2],
                last_message=_message(row[7:]) if row[7] is not None else None,
                last_seq=int(row[3]),
                read_seq=int(row[4]),
                is_pinned=bool(row[5]),
                is_muted=bool(row[6]),
            )
            for row in rows
        ]

    async def set_flag(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, flag: str, value: bool
    ) -> None:
        check_flag(flag)
        async with self._connection() as conn:
            cur = await conn.execute(
                f"UPDATE members SET {flag} = %s WHERE conversation_id = %s AND user_id = %s",
                (value, conversation_id, user_id),
            )
            if cur.rowcount == 0:
                raise NotAMember("not a member of this conversation")

    # Messages

    async def send_message(
        self,
        conversation_id: uuid.UUID,
        sender_id: uuid.UUID,
        client_msg_id: str,
        content: str,
        content_type: str,
    ) -> tuple[StoredMessage, bool]:
        msg = new_message(conversation_id, sender_id, client_msg_id, content, content_type)
        params = {
            "id": msg.id,
            "c": conversation_id,
            "u": sender_id,
            "k": client_msg_id,
            "content": content,
            "type": content_type,
            "at": msg.created_at,
        }
        row: tuple[Any, ...] = await self._sends.submit(params, sender_id)
        # Membership first: a non-member learns nothing of the sender's keys.
        if not row[0]:
            raise NotAMember("not a member of this conversation")
        if row[1] is not None:
            return dataclasses.replace(msg, seq=int(row[1])), True
        return retried(_message(row[3:]), conversation_id, content, content_type), False

    async def _commit_sends(self, batch: list[dict[str, Any]]) -> list[Outcome]:
        """A group commit of sends (`GroupCommit`: senders take turns, at most `_SHARE` of
        one's): one statement, one round trip and one transaction for the batch, so the
        database, not the round trips and this process's per-statement work, sets the pace.
        A batch that fails as a whole (a retry racing another instance's, a deadlock between
        two instances' batches) or repeats a key is run one send at a time, each its own
        transaction: only the failing one fails. Outcomes come in `batch`'s order."""
        if len(batch) > 1 and len({(p["u"], p["k"]) for p in batch}) == len(batch):
            try:
                return [(True, row) for row in await self._send_batch(batch)]
            except StoreError:
                pass
        alone: list[Outcome] = []
        for params in batch:
            try:
                alone.append((True, await self._send_one(params)))
            except Exception as exc:
                alone.append((False, exc))
        return alone

    async def _send_batch(self, batch: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        # One statement: psycopg waits on the event loop for every statement it sends and
        # every result it reads, so on a busy instance a batch's latency is counted in loop
        # turns; one statement is two of them and a single round trip.
        columns = {name: [params[name] for params in batch] for name in batch[0]}
        async with self._connection() as conn:
            cursor = await conn.execute(_SEND_BATCH, {"nth": list(range(len(batch))), **columns})
            return [tuple(row) for row in await cursor.fetchall()]

    async def _send_one(self, params: dict[str, Any]) -> tuple[Any, ...]:
        """One send, its own transaction; a racing retry answers the stored message's row."""
        async with self._connection() as conn:
            try:
                cursor = await conn.execute(_SEND, params)
                row = await cursor.fetchone()
            except psycopg.errors.DivisionByZero:  # the racing retry: see _SEND
                cursor = await conn.execute(
                    f"SELECT true, NULL::bigint, 0, {_MESSAGE_COLUMNS} FROM messages"
                    " WHERE sender_id = %s AND client_msg_id = %s",
                    (params["u"], params["k"]),
                )
                row = await cursor.fetchone()
        assert row is not None
        return tuple(row)

    async def delete_message(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage:
        async with self._connection() as conn, conn.transaction():
            try:
                msg = await _member_message(conn, conversation_id, user_id, message_id)
            except NotAMember:  # to a non-member, as if the message did not exist
                raise NotFound("no such message in a conversation of yours") from None
            own_message(msg, user_id)
            # The row stays, content gone: its seq is never reused and its key answers the
            # deletion to a retry, for ever.
            await conn.execute(
                "UPDATE messages SET content = '', deleted_at = now() WHERE id = %s",
                (message_id,),
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
        select = (
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = %s"
            " AND deleted_at IS NULL"
        )
        async with self._connection() as conn:
            if after_seq is not None:
                cur = await conn.execute(
                    f"{select} AND seq > %s ORDER BY seq ASC LIMIT %s",
                    (conversation_id, after_seq, limit + 1),
                )
                rows = await cur.fetchall()
                return [_message(r) for r in rows[:limit]], len(rows) > limit
            bound = before_seq if before_seq is not None else 2**62
            cur = await conn.execute(
                f"{select} AND seq < %s ORDER BY seq DESC LIMIT %s",
                (conversation_id, bound, limit + 1),
            )
            rows = await cur.fetchall()
        return [_message(r) for r in reversed(rows[:limit])], len(rows) > limit

    async def receipt(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID, read: bool
    ) -> tuple[Receipt, StoredMessage]:
        async with self._connection() as conn, conn.transaction():
            msg = await _member_message(conn, conversation_id, user_id, message_id)
            cur = await conn.execute(
                "SELECT delivered_seq, read_seq FROM members"
                " WHERE conversation_id = %s AND user_id = %s FOR UPDATE",
                (conversation_id, user_id),
            )
            before = await cur.fetchone()
            assert before is not None
            delivered = max(int(before[0]), msg.seq)
            read_seq = max(int(before[1]), msg.seq) if read else int(before[1])
            moved = (delivered, read_seq) != (int(before[0]), int(before[1]))
            if moved:
                await conn.execute(
                    "UPDATE members SET delivered_seq = GREATEST(delivered_seq, %s),"
                    " read_seq = GREATEST(read_seq, %s)"
                    " WHERE conversation_id = %s AND user_id = %s",
                    (delivered, read_seq, conversation_id, user_id),
                )
        return Receipt(conversation_id, user_id, delivered, read_seq, moved), msg

    async def unread(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> tuple[int, int]:
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT c.last_seq, m.read_seq FROM members m"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE m.conversation_id = %s AND m.user_id = %s",
                (conversation_id, user_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotAMember("not a member of this conversation")
        last_seq, read_seq = int(row[0]), int(row[1])
        return max(0, last_seq - read_seq), last_seq

    async def visible_users(
        self, watcher: uuid.UUID, targets: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not targets:
            return set()
        wanted = list(targets)
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT other.user_id FROM members mine JOIN members other"
                " ON other.conversation_id = mine.conversation_id"
                " WHERE mine.user_id = %s AND other.user_id = ANY(%s)"
                " UNION SELECT target_id FROM presence_grants"
                " WHERE watcher_id = %s AND target_id = ANY(%s)",
                (watcher, wanted, watcher, wanted),
            )
            return {row[0] for row in await cur.fetchall()}

    # Revocations

    async def add_revocations(self, revoked: Collection[Revoked]) -> None:
        rows = [(r.kind, r.id, r.expires_at) for r in revoked]
        async with self._connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO revocations (kind, id, expires_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (kind, id) DO UPDATE"
                    " SET expires_at = GREATEST(revocations.expires_at, excluded.expires_at)",
                    rows,
                )
            await conn.execute("DELETE FROM revocations WHERE expires_at < %s", (time.time(),))

    async def live_revocations(self, now: float) -> list[Revoked]:
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT kind, id, expires_at FROM revocations WHERE expires_at >= %s", (now,)
            )
            return [Revoked(str(r[0]), str(r[1]), float(r[2])) for r in await cur.fetchall()]

    async def close(self) -> None:
        await self._pool.close()


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    """Apply what is missing, one migrator at a time across every host (an advisory lock);
    the others wait, then find nothing to do."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"schema version {version} is newer than this gateway's {SCHEMA_VERSION}"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with conn.transaction():
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


async def _check_member(
    conn: psycopg.AsyncConnection[Any], conversation_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    cur = await conn.execute(
        "SELECT 1 FROM members WHERE conversation_id = %s AND user_id = %s",
        (conversation_id, user_id),
    )
    if await cur.fetchone() is None:
        raise NotAMember("not a member of this conversation")


async def _member_message(
    conn: psycopg.AsyncConnection[Any],
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    message_id: uuid.UUID,
) -> StoredMessage:
    await _check_member(conn, conversation_id, user_id)
    cur = await conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        " WHERE id = %s AND conversation_id = %s AND deleted_at IS NULL",
        (message_id, conversation_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound("no such message in this conversation")
    return _message(row)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

"""One contract, two backends: every `Store` method with the same semantics on SQLite and on a
real PostgreSQL (seq gap-free and unique under concurrent writers, idempotency by key,
watermarks forward only, deletes that keep their key, grants, revocations, migrations)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from gateway.store import (
    KeyConflict,
    NotAllowed,
    NotAMember,
    NotFound,
    Revoked,
    Store,
    StoreOpenError,
    open_store,
)
from gateway.store.postgres_migrations import MIGRATIONS as POSTGRES_MIGRATIONS
from gateway.store.postgres_migrations import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def test_conversations_members_and_the_direct_pair_created_once(store: Store) -> None:
    ann, bob, cat = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    direct, created = await store.create_conversation("direct", ann, [bob], "")
    again, created_again = await store.create_conversation("direct", bob, [ann], "")
    assert created and not created_again and again.id == direct.id
    group, _ = await store.create_conversation("group", ann, [bob, cat, bob], "trip")
    found = await store.get_conversation(group.id)
    assert found is not None and set(found.member_ids) == {ann, bob, cat}
    assert (found.type, found.name, found.created_by) == ("group", "trip", ann)
    assert await store.get_conversation(uuid.uuid4()) is None
    assert await store.user_conversations(bob) == {direct.id: 0, group.id: 0}


async def test_concurrent_sends_from_many_writers_get_one_gap_free_order(store: Store) -> None:
    users = [uuid.uuid4() for _ in range(6)]
    conv, _ = await store.create_conversation("group", users[0], users[1:], "room")
    sends = [
        store.send_message(conv.id, users[n % 6], f"k{n}", f"text {n}", "text") for n in range(120)
    ]
    results = await asyncio.gather(*sends)
    assert sorted(msg.seq for msg, created in results if created) == list(range(1, 121))
    page, more = await store.list_messages(conv.id, 500)
    assert [m.seq for m in page] == list(range(1, 121)) and not more


async def test_a_key_means_one_message_for_ever(store: Store) -> None:
    ann, bob, eve = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    c1, _ = await store.create_conversation("direct", ann, [bob], "")
    c2, _ = await store.create_conversation("group", ann, [eve], "")
    first, created = await store.send_message(c1.id, ann, "k", "hi", "text")
    retried = await asyncio.gather(
        *(store.send_message(c1.id, ann, "k", "hi", "text") for _ in range(5))
    )
    assert created and all(r == (first, False) for r in retried)
    with pytest.raises(KeyConflict, match="'k'"):
        await store.send_message(c2.id, ann, "k", "hi", "text")  # another conversation
    with pytest.raises(KeyConflict):
        await store.send_message(c1.id, ann, "k", "other words", "text")
    with pytest.raises(NotAMember):  # membership before the key
        await store.send_message(c1.id, eve, "k", "hi", "text")
    deleted = await store.delete_message(c1.id, ann, first.id)
    assert deleted.id == first.id
    again, created_again = await store.send_message(c1.id, ann, "k", "hi", "text")
    assert (again.id, again.deleted, created_again) == (first.id, True, False)
    nxt, _ = await store.send_message(c1.id, ann, "k2", "next", "text")
    assert nxt.seq == 2  # a deleted message's seq is never reused
    page, _ = await store.list_messages(c1.id, 10)
    assert [m.seq for m in page] == [2]


async def test_sends_committed_together_are_each_answered_as_if_alone(store: Store) -> None:
    """Sends issued at once commit in shared batches: a retry, a repeat inside the batch, a
    non-member, a key conflict and new sends into two conversations each get their own
    answer, and every conversation's seqs stay gap-free."""
    ann, bob, cat, eve = (uuid.uuid4() for _ in range(4))
    c1, _ = await store.create_conversation("direct", ann, [bob], "")
    c2, _ = await store.create_conversation("group", ann, [cat], "")
    old, _ = await store.send_message(c1.id, ann, "old", "hi", "text")
    results = await asyncio.gather(
        store.send_message(c1.id, ann, "old", "hi", "text"),
        store.send_message(c1.id, ann, "n1", "one", "text"),
        store.send_message(c1.id, eve, "e1", "intruder", "text"),
        store.send_message(c2.id, ann, "n2", "two", "text"),
        store.send_message(c2.id, cat, "n3", "three", "text"),
        store.send_message(c1.id, ann, "n1", "one", "text"),
        store.send_message(c1.id, ann, "old", "other words", "text"),
        store.send_message(c1.id, bob, "b1", "four", "text"),
        return_exceptions=True,
    )
    retry, n1, intruder, n2, n3, repeat, conflict, b1 = results
    assert retry == (old, False)
    assert isinstance(intruder, NotAMember) and isinstance(conflict, KeyConflict)
    assert isinstance(n1, tuple) and isinstance(repeat, tuple) and isinstance(b1, tuple)
    assert isinstance(n2, tuple) and isinstance(n3, tuple)
    assert n1[1] and repeat == (n1[0], False) and b1[1] and n2[1] and n3[1]
    assert sorted([n1[0].seq, b1[0].seq]) == [2, 3] and sorted([n2[0].seq, n3[0].seq]) == [1, 2]
    for conv, last in ((c1, 3), (c2, 2)):
        page, _ = await store.list_messages(conv.id, 10)
        assert [m.seq for m in page] == list(range(1, last + 1))
    # Each sender has read up to their own newest message, and no further.
    assert await store.unread(c1.id, bob) == (0, 3)
    assert await store.unread(c1.id, ann) == ((1, 3) if b1[0].seq == 3 else (0, 3))
    assert await store.unread(c2.id, cat) == (0 if n3[0].seq == 2 else 1, 2)


async def test_receipts_move_forward_only_and_unread_is_exact(store: Store) -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    conv, _ = await store.create_conversation("direct", ann, [bob], "")
    sent = [(await store.send_message(conv.id, ann, f"m{n}", f"{n}", "text"))[0] for n in range(4)]
    assert await store.unread(conv.id, bob) == (4, 4)
    receipt, _ = await store.receipt(conv.id, bob, sent[2].id, read=True)
    assert (receipt.delivered_seq, receipt.read_seq, receipt.moved) == (3, 3, True)
    back, _ = await store.receipt(conv.id, bob, sent[0].id, read=True)
    assert (back.delivered_seq, back.read_seq, back.moved) == (3, 3, False)
    delivered, _ = await store.receipt(conv.id, bob, sent[3].id, read=False)
    assert (delivered.delivered_seq, delivered.read_seq) == (4, 3)
    assert await store.unread(conv.id, bob) == (1, 4)
    assert await store.unread(conv.id, ann) == (0, 4)  # the sender read their own
    with pytest.raises(NotAMember):
        await store.unread(conv.id, uuid.uuid4())
    with pytest.raises(NotFound):
        await store.receipt(conv.id, bob, uuid.uuid4(), read=True)


async def test_summaries_flags_deletes_and_paging(store: Store) -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    conv, _ = await store.create_conversation("direct", ann, [bob], "")
    msgs = [(await store.send_message(conv.id, ann, f"m{n}", f"{n}", "text"))[0] for n in range(5)]
    await store.set_flag(conv.id, bob, "pinned", True)
    with pytest.raises(NotAMember):
        await store.set_flag(conv.id, uuid.uuid4(), "muted", True)
    with pytest.raises(NotAllowed):
        await store.delete_message(conv.id, bob, msgs[4].id)
    with pytest.raises(NotFound):
        await store.delete_message(conv.id, uuid.uuid4(), msgs[4].id)
    await store.delete_message(conv.id, ann, msgs[4].id)
    (summary,) = await store.conversation_summaries(bob)
    assert summary.is_pinned and not summary.is_muted
    assert summary.last_message is not None and summary.last_message.seq == 4
    assert (summary.last_seq, summary.unread_count) == (5, 5)
    older, more = await store.list_messages(conv.id, 2, before_seq=4)
    assert [m.seq for m in older] == [2, 3] and more
    newer, more_after = await store.list_messages(conv.id, 10, after_seq=1)
    assert [m.seq for m in newer] == [2, 3, 4] and not more_after


async def test_visible_users_by_conversation_or_grant(store: Store, store_url: str) -> None:
    ann, bob, cat, dan = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.create_conversation("direct", ann, [bob], "")
    grant = "INSERT INTO presence_grants (watcher_id, target_id) VALUES (%s, %s)"
    if store_url.startswith("postgresql://"):
        with psycopg.connect(store_url, autocommit=True) as db:
            db.execute(grant, (ann, cat))
    else:
        import sqlite3

        with sqlite3.connect(store_url) as db:
            db.execute(grant.replace("%s", "?"), (str(ann), str(cat)))
    assert await store.visible_users(ann, [bob, cat, dan]) == {bob, cat}
    assert await store.visible_users(ann, []) == set()


async def test_revocations_kept_until_they_end(store: Store) -> None:
    now = time.time()
    await store.add_revocations(
        [Revoked("token", "t1", now + 60), Revoked("session", "s1", now + 60)]
    )
    await store.add_revocations(
        [Revoked("token", "t1", now + 30), Revoked("token", "old", now - 1)]
    )
    live = {(r.kind, r.id): r.expires_at for r in await store.live_revocations(now)}
    assert live == {("token", "t1"): now + 60, ("session", "s1"): now + 60}  # the later end wins


_OPENER = textwrap.dedent(
    """
    import asyncio, sys, time
    from gateway.store import open_store

    async def main() -> None:
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process at once
        store = await open_store(sys.argv[1])
        await store.close()

    asyncio.run(main())
    """
)


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time, uuid
    from gateway.store import open_store

    async def main() -> None:
        url, start, conversation, me, shared, name = sys.argv[1:7]
        store = await open_store(url)
        time.sleep(max(0.0, float(start) - time.time()))  # every process at once
        sends = [
            store.send_message(uuid.UUID(conversation), uuid.UUID(me), f"{name}-{n}", "x", "text")
            for n in range(40)
        ] + [  # one sender's retries, from every process: one message each
            store.send_message(uuid.UUID(conversation), uuid.UUID(shared), f"s{n}", "x", "text")
            for n in range(10)
        ]
        await asyncio.gather(*sends)
        await store.close()

    asyncio.run(main())
    """
)


def _run_at_once(script: str, argvs: list[list[str]]) -> None:
    """`script` in one process per argv, each started on its own; fails on any error."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *argv], env=env, stderr=subprocess.PIPE)
        for argv in argvs
    ]
    failures = [
        err.decode()[-400:] for p in procs if (err := p.communicate(timeout=60)[1]) and p.returncode
    ]
    assert failures == []


async def test_writers_in_several_processes_get_one_gap_free_order(
    store: Store, store_url: str
) -> None:
    """Instances on many hosts (or many on one SQLite host) writing one conversation at once:
    every seq taken once, none skipped, and a key sent from every process stored once."""
    writers = [uuid.uuid4() for _ in range(4)]
    shared = uuid.uuid4()
    conv, _ = await store.create_conversation("group", shared, writers, "busy")
    start = str(time.time() + 1.5)
    _run_at_once(
        _WRITER,
        [
            [store_url, start, str(conv.id), str(writer), str(shared), f"w{index}"]
            for index, writer in enumerate(writers)
        ],
    )
    page, more = await store.list_messages(conv.id, 1000, after_seq=0)
    assert [m.seq for m in page] == list(range(1, 4 * 40 + 10 + 1)) and not more
    keys = [m.client_msg_id for m in page if m.sender_id == shared]
    assert sorted(keys) == sorted(f"s{n}" for n in range(10))


async def test_a_database_at_an_older_schema_is_migrated_in_place(postgres_url: str) -> None:
    """A database left at schema version 1 (before `send_batch`), with its records, is brought
    to the current version by the next instance, and its conversations go on where they were."""
    ann, bob = uuid.uuid4(), uuid.uuid4()
    conversation, first = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        db.execute(POSTGRES_MIGRATIONS[0])
        db.execute("INSERT INTO schema_migrations (version) VALUES (1)")
        db.execute(
            "INSERT INTO conversations (id, type, name, created_by, created_at, last_seq)"
            " VALUES (%s, 'group', 'old', %s, now(), 2)",
            (conversation, ann),
        )
        db.execute(
            "INSERT INTO members (conversation_id, user_id, read_seq)"
            " VALUES (%s, %s, 2), (%s, %s, 0)",
            (conversation, ann, conversation, bob),
        )
        for seq, (key, message) in enumerate([("k1", first), ("k2", uuid.uuid4())], start=1):
            db.execute(
                "INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id,"
                " content, content_type, created_at)"
                " VALUES (%s, %s, %s, %s, %s, 'old', 'text', now())",
                (message, conversation, seq, ann, key),
            )
    store = await open_store(postgres_url)
    try:
        sent = await asyncio.gather(
            *(store.send_message(conversation, ann, f"new{n}", "new", "text") for n in range(5))
        )
        assert sorted(msg.seq for msg, created in sent if created) == [3, 4, 5, 6, 7]
        retry, created = await store.send_message(conversation, ann, "k1", "old", "text")
        assert (retry.id, retry.seq, created) == (first, 1, False)
        assert await store.unread(conversation, bob) == (7, 7)
    finally:
        await store.close()
    with psycopg.connect(postgres_url) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))


def test_instances_starting_at_once_on_an_empty_database_migrate_once(postgres_url: str) -> None:
    start = str(time.time() + 1.0)
    _run_at_once(_OPENER, [[postgres_url, start] for _ in range(6)])
    with psycopg.connect(postgres_url) as db:
        versions = [
            row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY 1")
        ]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


async def test_an_unreachable_server_is_one_line_naming_it(postgres_server: str) -> None:
    base = postgres_server.rsplit("@", 1)[0]
    url = f"{base}@127.0.0.1:1/nowhere"
    with pytest.raises(
        StoreOpenError, match=r"cannot open the store postgresql://127\.0\.0\.1:1/nowhere"
    ):
        await open_store(url)


async def test_the_same_new_key_sent_at_once_stores_one_message_and_spends_one_seq(
    store: Store,
) -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    conv, _ = await store.create_conversation("direct", ann, [bob], "")
    for round_ in range(5):
        key = f"race-{round_}"
        results = await asyncio.gather(
            *(store.send_message(conv.id, ann, key, "same", "text") for _ in range(8))
        )
        assert sum(created for _, created in results) == 1
        assert len({msg.id for msg, _ in results}) == 1
    page, _ = await store.list_messages(conv.id, 10)
    assert [m.seq for m in page] == [1, 2, 3, 4, 5]  # no seq spent by a losing racer


def test_serve_refuses_an_unreachable_postgresql_in_one_line_without_its_password(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0",
         "--store", "postgres://gw:s3cret-pw@127.0.0.1:1/chat?sslmode=disable",
         "--jwt-secret", "store-test-secret-0123456789abcdef0123"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "presence-gateway: cannot open the store postgresql://127.0.0.1:1/chat"
    )
    assert "s3cret-pw" not in result.stderr + result.stdout


async def test_two_instances_racing_one_new_key_store_one_message(postgres_url: str) -> None:
    """Two stores on one database (two instances): the same new keys sent by both at once,
    in batches with other sends, store each message once and spend one seq each."""
    first, second = await open_store(postgres_url), await open_store(postgres_url)
    try:
        ann, bob = uuid.uuid4(), uuid.uuid4()
        conv, _ = await first.create_conversation("direct", ann, [bob], "")
        sends = [
            store.send_message(conv.id, ann, f"k{n}", "same", "text")
            for n in range(60)
            for store in (first, second, first, second)
        ]
        results = await asyncio.gather(*sends)
        assert sum(created for _, created in results) == 60
        assert len({msg.id for msg, _ in results}) == 60
        page, _ = await first.list_messages(conv.id, 100)
        assert [m.seq for m in page] == list(range(1, 61))
    finally:
        await first.close()
        await second.close()

"""Writes issued together share a transaction (group commit) and still behave one by one: each
gets its own seq, its own error, its own retry answer; a failed one leaves nothing behind."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest

from gateway.store import KeyConflict, NotAMember, SqliteStore, StoreError


async def test_concurrent_sends_get_consecutive_seqs_and_each_its_own_outcome(
    tmp_path: Path,
) -> None:
    store = await SqliteStore(str(tmp_path / "s.sqlite3")).open()
    try:
        alice, bob, stranger = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        conv, _ = await store.create_conversation("group", alice, [bob], "room")
        sends = [
            store.send_message(conv.id, alice if n % 2 else bob, f"m{n}", f"text {n}", "text")
            for n in range(300)
        ]
        sends.insert(150, store.send_message(conv.id, stranger, "x", "intruder", "text"))
        sends.append(store.send_message(conv.id, bob, "m0", "text 0", "text"))
        sends.append(store.send_message(conv.id, bob, "m0", "other words, same key", "text"))
        outcomes = await asyncio.gather(*sends, return_exceptions=True)

        assert isinstance(outcomes[150], NotAMember)
        stored = [o for i, o in enumerate(outcomes[:-2]) if i != 150]
        assert all(isinstance(o, tuple) and o[1] for o in stored)
        seqs = sorted(o[0].seq for o in stored if isinstance(o, tuple))
        assert seqs == list(range(1, 301))
        retry, reused = outcomes[-2:]
        first = outcomes[0]
        assert isinstance(reused, KeyConflict)  # a key means one message: the same content
        assert isinstance(retry, tuple) and isinstance(first, tuple)
        assert retry == (first[0], False)  # the stored message, nothing created

        page, more = await store.list_messages(conv.id, 500)
        assert [m.seq for m in page] == list(range(1, 301)) and not more
        assert "intruder" not in {m.content for m in page}
    finally:
        await store.close()


async def test_a_write_that_fails_mid_way_leaves_nothing_and_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = await SqliteStore(str(path)).open()
    try:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        conv, _ = await store.create_conversation("group", alice, [bob], "room")
        # A trigger makes the message insert fail after the seq was taken: the savepoint must
        # give the seq back, and the write beside it must commit.
        db = sqlite3.connect(path)
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.content = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )
        db.commit()
        db.close()
        outcomes = await asyncio.gather(
            store.send_message(conv.id, alice, "a", "poison", "text"),
            store.send_message(conv.id, alice, "b", "fine", "text"),
            return_exceptions=True,
        )
        assert "refused by trigger" in str(outcomes[0])
        assert isinstance(outcomes[1], tuple) and outcomes[1][0].seq == 1
        summaries = await store.conversation_summaries(bob)
        assert [(s.last_seq, s.unread_count) for s in summaries] == [(1, 1)]
    finally:
        await store.close()


async def test_the_write_ahead_log_shrinks_back_after_a_burst(tmp_path: Path) -> None:
    """A burst leaves a log of its size without the truncating checkpoint (the file SQLite's own
    checkpoints never shrink); with it, the log stays within the limit and nothing is lost."""
    limit = 256 << 10
    sizes = {}
    for name, wal_limit in (("unbounded", 1 << 40), ("bounded", limit)):
        path = tmp_path / f"{name}.sqlite3"
        store = await SqliteStore(str(path), wal_limit=wal_limit).open()
        try:
            alice, bob = uuid.uuid4(), uuid.uuid4()
            conv, _ = await store.create_conversation("group", alice, [bob], "room")
            for batch in range(20):
                await asyncio.gather(
                    *(
                        store.send_message(conv.id, alice, f"m{batch}-{n}", "x" * 2000, "text")
                        for n in range(20)
                    )
                )
            sizes[name] = (tmp_path / f"{name}.sqlite3-wal").stat().st_size
            page, _ = await store.list_messages(conv.id, 1000)
            assert len(page) == 400  # nothing lost by the checkpoints
        finally:
            await store.close()
    assert sizes["unbounded"] > 4 * limit
    assert sizes["bounded"] <= limit


async def test_a_write_after_the_file_was_deleted_is_refused_not_acknowledged(
    tmp_path: Path,
) -> None:
    """No watch runs here: the write itself finds its commit went to a deleted file."""
    path = tmp_path / "s.sqlite3"
    store = await SqliteStore(str(path)).open()
    try:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        conv, _ = await store.create_conversation("group", alice, [bob], "room")
        assert store.trouble() is None
        path.unlink()
        with pytest.raises(StoreError, match="deleted"):
            await store.send_message(conv.id, alice, "m1", "lost?", "text")
        with pytest.raises(StoreError, match="deleted"):
            await store.list_messages(conv.id, 10)
        assert "deleted" in (store.trouble() or "")
    finally:
        await store.close()

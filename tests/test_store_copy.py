"""Moving across: `presence-gateway store copy SRC DST` takes every conversation, member,
message (deleted ones as deleted), watermark, grant and revocation from a SQLite file to a
PostgreSQL database; a second run copies nothing new; the copy then serves as the store."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

from gateway.store import Revoked, open_store
from gateway.store.copy import copy_store

ROOT = Path(__file__).resolve().parent.parent


async def test_a_sqlite_store_copied_to_postgresql_serves_the_same(
    tmp_path: Path, postgres_url: str
) -> None:
    source = str(tmp_path / "old.sqlite3")
    store = await open_store(source)
    ann, bob, cat = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    direct, _ = await store.create_conversation("direct", ann, [bob], "")
    group, _ = await store.create_conversation("group", ann, [bob, cat], "trip")
    sent = [
        (await store.send_message(direct.id, ann, f"m{n}", f"{n}", "text"))[0] for n in range(1500)
    ]
    await store.send_message(group.id, cat, "g0", "hello", "markdown")
    await store.receipt(direct.id, bob, sent[1199].id, read=True)
    await store.set_flag(direct.id, bob, "pinned", True)
    await store.delete_message(direct.id, ann, sent[0].id)
    await store.add_revocations([Revoked("token", "jti-1", time.time() + 600)])
    await store.close()
    with sqlite3.connect(source) as db:
        db.execute("INSERT INTO presence_grants VALUES (?, ?)", (str(ann), str(cat)))

    first = await copy_store(source, postgres_url, progress=io.StringIO())
    assert first.complete and first.copied["messages"] == 1501
    assert first.counts["members"] == (5, 5)
    again = await copy_store(source, postgres_url, progress=io.StringIO())  # nothing new, no error
    assert again.counts == first.counts

    copied = await open_store(postgres_url)
    try:
        assert await copied.unread(direct.id, bob) == (300, 1500)
        (summary,) = [s for s in await copied.conversation_summaries(bob) if s.id == direct.id]
        assert summary.is_pinned and summary.last_seq == 1500
        retry, created = await copied.send_message(direct.id, ann, "m0", "0", "text")
        assert (retry.id, retry.deleted, created) == (sent[0].id, True, False)
        nxt, created = await copied.send_message(direct.id, ann, "new", "after", "text")
        assert created and nxt.seq == 1501  # the counter came across
        assert await copied.visible_users(ann, [cat]) == {cat}
        assert {r.id for r in await copied.live_revocations(time.time())} == {"jti-1"}
    finally:
        await copied.close()


def test_the_command_line_copies_and_compares_counts(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "s.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "gateway", "store", "copy", str(source), postgres_url]
    done = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "messages: 0 in the source, 0 in the destination" in done.stdout
    unreachable = subprocess.run(
        [*run[:-1], "postgresql://postgres@127.0.0.1:1/none"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert unreachable.returncode == 2
    assert "cannot open the store postgresql://127.0.0.1:1/none" in unreachable.stderr


class _Interrupted(Exception):
    """The copy stopped between two batches (a kill, a lost connection)."""


class _StopsAfter(io.StringIO):
    """Progress output that stops the copy once `table` shows `rows` copied."""

    def __init__(self, table: str, rows: int) -> None:
        super().__init__()
        self._mark = (table, f"{rows:,}/")

    def write(self, text: str) -> int:
        if text.lstrip("\r").startswith(self._mark[0]) and self._mark[1] in text:
            raise _Interrupted
        return super().write(text)


async def test_an_interrupted_copy_is_finished_by_running_it_again(
    tmp_path: Path, postgres_url: str
) -> None:
    source = str(tmp_path / "old.sqlite3")
    store = await open_store(source)
    ann, bob = uuid.uuid4(), uuid.uuid4()
    direct, _ = await store.create_conversation("direct", ann, [bob], "")
    sent = [
        (await store.send_message(direct.id, ann, f"m{n}", f"{n}", "text"))[0] for n in range(2500)
    ]
    try:
        await copy_store(source, postgres_url, progress=_StopsAfter("messages", 1000))
    except _Interrupted:
        pass
    else:
        raise AssertionError("the copy was not interrupted")
    halfway = await open_store(postgres_url)
    try:
        page, _ = await halfway.list_messages(direct.id, 2500, after_seq=0)
        assert 0 < len(page) < 2500  # stopped partway through the messages
    finally:
        await halfway.close()
    # The gateway kept serving from the source meanwhile.
    await store.delete_message(direct.id, ann, sent[0].id)  # copied already, then deleted
    await store.send_message(direct.id, bob, "late", "after the interruption", "text")
    await store.close()

    finished = await copy_store(source, postgres_url, progress=io.StringIO())
    assert finished.complete
    assert finished.counts["messages"] == (2501, 2501)
    copied = await open_store(postgres_url)
    try:
        page, more = await copied.list_messages(direct.id, 3000, after_seq=0)
        assert [m.seq for m in page] == list(range(2, 2502)) and not more  # 1 is deleted
        assert page[-1].client_msg_id == "late"
        retry, created = await copied.send_message(direct.id, ann, "m0", "0", "text")
        assert (retry.id, retry.deleted, created) == (sent[0].id, True, False)
    finally:
        await copied.close()

"""ConversationCache against a real server: order, unread, pin/mute, version-guarded fills."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from caches import CachedConversation, ConversationCache
from caches.models import utcnow
from caches.redis import RedisClient

T0 = utcnow()


def conv(minutes: int, *, pinned: bool = False, unread: int = 0) -> CachedConversation:
    return CachedConversation(
        id=uuid.uuid4(),
        name=f"c{minutes}",
        last_message_at=T0 + timedelta(minutes=minutes),
        is_pinned=pinned,
        unread_count=unread,
    )


def names(convs: list[CachedConversation] | None) -> list[str]:
    assert convs is not None
    return [c.name for c in convs]


@pytest.fixture
def redis(any_redis: RedisClient) -> RedisClient:
    """Every test here runs with each kind of client users build (see conftest)."""
    return any_redis


async def test_sorted_pinned_first_then_newest(redis: RedisClient) -> None:
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    convs = [conv(1), conv(5), conv(3, pinned=True), conv(2)]
    assert await cache.set_user_conversations(user, convs, complete=True)
    assert names(await cache.get_user_conversations(user, 10)) == ["c3", "c5", "c2", "c1"]
    assert names(await cache.get_user_conversations(user, 2)) == ["c3", "c5"]


async def test_miss_vs_empty_and_partial(redis: RedisClient) -> None:
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    assert await cache.get_user_conversations(user) is None
    await cache.set_user_conversations(user, [], complete=True)
    assert await cache.get_user_conversations(user) == []
    other = uuid.uuid4()
    await cache.set_user_conversations(other, [conv(1), conv(2)], complete=False)  # a page
    assert names(await cache.get_user_conversations(other, 2)) == ["c2", "c1"]
    assert await cache.get_user_conversations(other, 3) is None


async def test_update_last_message_resorts(redis: RedisClient) -> None:
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    old, new = conv(1), conv(2)
    await cache.set_user_conversations(user, [old, new], complete=True)
    await cache.update_last_message(user, old.id, "m9", "hello", T0 + timedelta(minutes=9))
    got = await cache.get_user_conversations(user)
    assert got is not None and got[0].id == old.id
    assert (got[0].last_message_id, got[0].last_message_text) == ("m9", "hello")
    # An older message arriving late does not move the preview back.
    await cache.update_last_message(user, old.id, "m0", "stale", T0)
    got = await cache.get_user_conversations(user)
    assert got is not None and got[0].last_message_text == "hello"


async def test_unread_per_conversation_and_total(redis: RedisClient) -> None:
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    a, b = conv(1, unread=2), conv(2)
    await cache.set_user_conversations(user, [a, b], complete=True)
    assert await cache.increment_unread(user, b.id) == 1
    assert await cache.increment_unread(user, b.id) == 2
    assert await cache.get_total_unread_count(user) == 4
    await cache.reset_unread(user, a.id)
    assert await cache.get_total_unread_count(user) == 2
    assert await cache.get_total_unread_count(uuid.uuid4()) is None


async def test_pin_mute_remove_delete(redis: RedisClient) -> None:
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    a, b, c = conv(1), conv(2), conv(3)
    await cache.set_user_conversations(user, [a, b, c], complete=True)
    await cache.set_pinned(user, a.id, True)
    await cache.set_muted(user, b.id, True)
    got = await cache.get_user_conversations(user)
    assert names(got) == ["c1", "c3", "c2"]
    assert got is not None and got[0].is_pinned and got[2].is_muted
    await cache.set_pinned(user, a.id, False)
    assert names(await cache.get_user_conversations(user)) == ["c3", "c2", "c1"]
    await cache.remove_conversation(user, c.id)
    assert names(await cache.get_user_conversations(user)) == ["c2", "c1"]
    await cache.delete_user_conversations(user)
    assert await cache.get_user_conversations(user) is None


async def test_write_to_uncached_list_creates_nothing(redis: RedisClient) -> None:
    cache = ConversationCache(redis)
    user, cid = uuid.uuid4(), uuid.uuid4()
    await cache.update_last_message(user, cid, "m1", "hi", T0)
    assert await cache.increment_unread(user, cid) is None
    assert await cache.get_user_conversations(user, 1) is None


async def test_update_of_unknown_conversation_drops_the_list(redis: RedisClient) -> None:
    """A message in a conversation the cached list lacks makes the list incomplete: a miss."""
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    await cache.set_user_conversations(user, [conv(1)], complete=True)
    await cache.update_last_message(user, uuid.uuid4(), "m1", "hi", T0)
    assert await cache.get_user_conversations(user) is None


async def test_fill_from_before_a_write_is_refused_a_fresh_one_installs(
    redis: RedisClient,
) -> None:
    """A store read taken before a write can never overwrite that write."""
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    stale = conv(1)
    version = await cache.fill_version(user)  # miss: version first, then the store read
    await cache.increment_unread(user, stale.id)  # a write lands during the store read
    assert await cache.set_user_conversations(user, [stale], version=version) is False
    assert await cache.get_user_conversations(user) is None
    fresh = await cache.fill_version(user)  # the next miss reads after the write
    assert await cache.set_user_conversations(user, [stale], version=fresh) is True
    assert names(await cache.get_user_conversations(user)) == ["c1"]


async def test_writes_never_keep_a_list_out_of_the_cache(redis: RedisClient) -> None:
    """Unlike a time fence, a list written often is cached by the first fill that no write
    raced; and writes to it from then on land in it."""
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    a = conv(1)
    for _ in range(20):
        await cache.increment_unread(user, a.id)  # writes before any fill
        version = await cache.fill_version(user)
        assert await cache.set_user_conversations(user, [a], version=version)
    await cache.increment_unread(user, a.id)
    got = await cache.get_user_conversations(user)
    assert got is not None and got[0].unread_count == 1


async def test_concurrent_fills_and_writes_never_lose_a_write(redis: RedisClient) -> None:
    """Fills racing writes: whatever installs, the cached count is never below the writes
    that came after the fill's store read (here, the store is the write counter itself)."""
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    a = conv(1)
    writes = 0

    async def writer() -> None:
        nonlocal writes
        for _ in range(50):
            writes += 1
            await cache.increment_unread(user, a.id)
            await asyncio.sleep(0)

    async def filler() -> None:
        for _ in range(50):
            version = await cache.fill_version(user)
            snapshot = CachedConversation(id=a.id, name="c1", unread_count=writes)  # store read
            await asyncio.sleep(0)
            await cache.set_user_conversations(user, [snapshot], version=version)

    await asyncio.gather(writer(), filler(), filler())
    got = await cache.get_user_conversations(user)
    assert got is None or got[0].unread_count == writes


async def test_spec_call_caches_the_whole_list(redis: RedisClient) -> None:
    """As in the spec: set the list, then the total unread count answers."""
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    a, b = conv(1), conv(2)
    a.unread_count, b.unread_count = 2, 3
    assert await cache.set_user_conversations(user, [a, b], 600)
    assert await cache.get_total_unread_count(user) == 5
    assert await cache.set_user_conversations(user, [a], 600, complete=False)  # a page
    assert await cache.get_total_unread_count(user) is None


async def test_record_message_updates_preview_and_counts_unread_in_one_step(
    redis: RedisClient,
) -> None:
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    a = conv(1)
    await cache.set_user_conversations(user, [a])
    await cache.record_message(user, a.id, "m1", "theirs", T0 + timedelta(minutes=5), unread=True)
    await cache.record_message(user, a.id, "m2", "mine", T0 + timedelta(minutes=6), unread=False)
    got = await cache.get_user_conversations(user)
    assert got is not None
    assert (got[0].last_message_text, got[0].unread_count) == ("mine", 1)
    assert await cache.get_total_unread_count(user) == 1


async def test_watermarks_make_unread_order_independent(redis: RedisClient) -> None:
    """With seqs, a read and the messages around it agree in any order of arrival."""
    cache = ConversationCache(redis)
    user = uuid.uuid4()
    a = CachedConversation(id=uuid.uuid4(), name="a", last_seq=2, read_seq=2)
    await cache.set_user_conversations(user, [a])
    at = T0 + timedelta(minutes=1)
    await cache.record_message(user, a.id, "m5", "5", at, unread=True, seq=5)
    await cache.record_read(user, a.id, 4)  # read up to 4, arriving after 5
    await cache.record_message(user, a.id, "m3", "3", at, unread=True, seq=3)  # late
    await cache.record_message(user, a.id, "m4", "4", at, unread=True, seq=4)
    assert await cache.get_total_unread_count(user) == 1  # only 5
    await cache.record_read(user, a.id, 3)  # never backwards
    assert await cache.get_total_unread_count(user) == 1
    await cache.record_message(user, a.id, "m6", "6", at, unread=False, seq=6)  # own message
    assert await cache.get_total_unread_count(user) == 0


async def test_a_message_for_every_member_is_one_call_and_skips_uncached_lists(
    redis: RedisClient,
) -> None:
    cache = ConversationCache(redis)
    sender, reader, absent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    room = CachedConversation(id=uuid.uuid4(), name="room", last_seq=1, read_seq=1)
    for user in (sender, reader):
        await cache.set_user_conversations(user, [room])
    at = T0 + timedelta(minutes=2)
    await cache.record_message_for_members(
        [sender, str(reader), absent], room.id, "m2", "hi all", at, sender_id=sender, seq=2
    )
    for user, unread in ((sender, 0), (reader, 1)):
        got = await cache.get_user_conversations(user)
        assert got is not None
        assert (got[0].last_message_text, got[0].last_seq, got[0].unread_count) == (
            "hi all",
            2,
            unread,
        )
    assert await cache.get_user_conversations(absent) is None  # nothing partial created

"""MessageCache against a real server: order, cap, status, miss vs empty, cache-aside races."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest

from caches import (
    CachedConversation,
    CachedMessage,
    ConversationCache,
    MessageCache,
    PresenceCache,
    keys,
)
from caches._base import is_cluster
from caches.models import utcnow
from caches.presence import Announcement
from caches.redis import RedisClient
from tests.conftest import MS, wait_for

T0 = utcnow()


def make(conv: uuid.UUID, n: int, status: str = "sent") -> CachedMessage:
    return CachedMessage(
        id=str(uuid.uuid4()),
        conversation_id=conv,
        sender_id=uuid.uuid4(),
        content=f"m{n}",
        status=status,
        created_at=T0 + timedelta(milliseconds=n),
        seq=n,
    )


@pytest.fixture
def redis(any_redis: RedisClient) -> RedisClient:
    """Every test here runs with each kind of client users build (see conftest)."""
    return any_redis


async def test_set_get_message_with_ttl(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    msg = make(uuid.uuid4(), 1)
    await cache.set_message(msg)
    assert await cache.get_message(msg.id) == msg
    assert 14 * 60_000 < await redis.pttl(keys.message(msg.id)) <= 15 * 60_000
    short = make(uuid.uuid4(), 2)
    await cache.set_message(short, 100 * MS)

    async def expired() -> bool:
        return await cache.get_message(short.id) is None

    await wait_for(expired)


async def test_miss_is_none_and_loaded_empty_is_empty_list(redis: RedisClient) -> None:
    """Never loaded: None. Loaded complete with no messages: []."""
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    assert await cache.get_conversation_messages(conv, 10) is None
    await cache.set_conversation_messages(conv, [], complete=True)
    assert await cache.get_conversation_messages(conv, 10) == []


async def test_add_to_unloaded_list_is_never_served(redis: RedisClient) -> None:
    """An add before any load must not become a partial list that reads as complete."""
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    await cache.add_message_to_conversation(conv, make(conv, 1))
    assert await cache.get_conversation_messages(conv, 1) is None


async def test_ordered_by_created_at_oldest_first(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    msgs = [make(conv, n) for n in range(10)]
    await cache.set_conversation_messages(conv, list(reversed(msgs[:5])), complete=True)
    for msg in msgs[5:]:
        await cache.add_message_to_conversation(conv, msg)
    got = await cache.get_conversation_messages(conv, 10)
    assert got is not None and [m.content for m in got] == [f"m{n}" for n in range(10)]
    newest = await cache.get_conversation_messages(conv, 3)
    assert newest is not None and [m.content for m in newest] == ["m7", "m8", "m9"]


async def test_partial_list_answers_only_what_it_holds(redis: RedisClient) -> None:
    """Loaded with the newest 5 of a longer history: limit 5 hits, limit 6 misses."""
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    await cache.set_conversation_messages(conv, [make(conv, n) for n in range(5)])
    assert await cache.get_conversation_messages(conv, 5) is not None
    assert await cache.get_conversation_messages(conv, 6) is None


async def test_capped_at_newest_hundred_in_the_same_step(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    await cache.set_conversation_messages(conv, [], complete=True)
    for n in range(105):
        await cache.add_message_to_conversation(conv, make(conv, n))
    assert await redis.zcard(keys.conversation_messages(conv)) == 100
    assert await redis.hlen(keys.conversation_message_bodies(conv)) == 102  # + 2 markers
    got = await cache.get_conversation_messages(conv, 100)
    assert got is not None and got[0].content == "m5" and got[-1].content == "m104"
    # Trimmed, the list no longer holds the whole conversation.
    assert await cache.get_conversation_messages(conv, 101) is None


async def test_status_update_visible_everywhere_and_never_backwards(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    msg = make(conv, 1)
    await cache.set_message(msg)
    await cache.set_conversation_messages(conv, [msg], complete=True)
    assert await cache.update_message_status(msg.id, "read") is True
    single = await cache.get_message(msg.id)
    listed = await cache.get_conversation_messages(conv, 1)
    assert single is not None and single.status == "read"
    assert listed is not None and listed[0].status == "read"
    assert await cache.update_message_status(msg.id, "delivered", conversation_id=conv) is False
    listed = await cache.get_conversation_messages(conv, 1)
    assert listed is not None and listed[0].status == "read"
    with pytest.raises(ValueError, match="status"):
        await cache.update_message_status(msg.id, "bogus")


async def test_concurrent_add_and_load_leave_no_gap_or_duplicate(redis: RedisClient) -> None:
    """A load read from the store before a new message, installed after its add, keeps it."""
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    history = [make(conv, n) for n in range(20)]
    fresh = make(conv, 20)
    for _ in range(20):
        await cache.delete_conversation_messages(conv)
        await asyncio.gather(
            cache.add_message_to_conversation(conv, fresh),
            cache.set_conversation_messages(conv, history, complete=True),
        )
        got = await cache.get_conversation_messages(conv, 50)
        assert got is not None
        assert [m.seq for m in got] == list(range(21))


async def test_load_keeps_a_newer_status(redis: RedisClient) -> None:
    """A stale store read (status sent) merged after a read receipt keeps 'read'."""
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    msg = make(conv, 1)
    await cache.add_message_to_conversation(conv, msg)
    await cache.update_message_status(msg.id, "read", conversation_id=conv)
    await cache.set_conversation_messages(conv, [msg], complete=True)
    got = await cache.get_conversation_messages(conv, 1)
    assert got is not None and got[0].status == "read"


async def test_unread_counters(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    conv, ann, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert await cache.get_unread_count(conv, ann) == 0
    assert await cache.increment_unread_count(conv, ann) == 1
    assert await cache.increment_unread_count(conv, ann) == 2
    assert await cache.increment_unread_count(conv, bob) == 1
    await cache.reset_unread_count(conv, ann)
    assert await cache.get_unread_count(conv, ann) == 0
    assert await cache.get_unread_count(conv, bob) == 1


async def test_unread_counter_is_a_miss_until_filled_and_never_created_by_a_message(
    redis: RedisClient,
) -> None:
    cache = MessageCache(redis)
    conv, ann, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert await cache.cached_unread_count(conv, ann) is None  # unknown, not 0
    await cache.record_unread(conv, [ann, bob], seq=1)
    assert await cache.cached_unread_count(conv, ann) is None  # nothing partial created
    version = await cache.unread_fill_version(conv)
    assert await cache.fill_unread_count(conv, ann, 1, as_of_seq=1, version=version)
    await cache.record_unread(conv, [ann, bob], seq=2)
    await cache.record_unread(conv, [ann, bob], seq=3)
    assert await cache.cached_unread_count(conv, ann) == 3
    assert await cache.cached_unread_count(conv, bob) is None
    await cache.reset_unread_count(conv, ann)
    assert await cache.cached_unread_count(conv, ann) is None


async def test_a_late_write_through_is_not_counted_twice(redis: RedisClient) -> None:
    """The store already counted seq 5 when the counter was filled; its write-through, arriving
    after the fill, must not count it again; seq 6, arriving first, counts."""
    cache = MessageCache(redis)
    conv, ann = uuid.uuid4(), uuid.uuid4()
    version = await cache.unread_fill_version(conv)
    assert await cache.fill_unread_count(conv, ann, 5, as_of_seq=5, version=version)
    await cache.record_unread(conv, [ann], seq=6)
    await cache.record_unread(conv, [ann], seq=5)  # late
    assert await cache.cached_unread_count(conv, ann) == 6


async def test_a_fill_from_before_a_message_or_a_read_is_refused(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    conv, ann = uuid.uuid4(), uuid.uuid4()
    version = await cache.unread_fill_version(conv)
    await cache.record_unread(conv, [ann], seq=7)  # committed after the store read
    assert not await cache.fill_unread_count(conv, ann, 6, as_of_seq=6, version=version)
    assert await cache.cached_unread_count(conv, ann) is None
    version = await cache.unread_fill_version(conv)
    await cache.reset_unread_count(conv, ann)  # a read after the store read
    assert not await cache.fill_unread_count(conv, ann, 7, as_of_seq=7, version=version)
    assert await cache.cached_unread_count(conv, ann) is None


async def test_delete_message_and_conversation(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    conv = uuid.uuid4()
    a, b = make(conv, 1), make(conv, 2)
    await cache.set_message(a)
    await cache.set_conversation_messages(conv, [a, b], complete=True)
    await cache.delete_message(a.id)
    assert await cache.get_message(a.id) is None
    got = await cache.get_conversation_messages(conv, 10)
    assert got is not None and [m.id for m in got] == [b.id]
    await cache.delete_conversation_messages(conv)
    assert await cache.get_conversation_messages(conv, 10) is None


async def test_a_sent_message_is_announced_by_its_write_through_on_one_server(
    redis: RedisClient,
) -> None:
    """On one server the event rides the write-through's call, published after the writes
    (who hears it finds the message cached); on a cluster the writes span slots, so the call
    leaves the event to its caller and says so."""
    messages = MessageCache(redis)
    conv, ann = uuid.uuid4(), uuid.uuid4()
    channel = keys.conversation_channel(conv)
    sent = dataclasses.replace(make(conv, 1), sender_id=ann)
    announce = Announcement(channel, b"message.new 1")
    if is_cluster(redis):
        assert not await messages.record_sent(sent, [ann], announce=announce)
        assert await messages.get_message(sent.id) == sent
        return
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    try:
        assert await pubsub.get_message(timeout=5)  # the subscription's confirmation
        assert await messages.record_sent(sent, [ann], announce=announce)
        heard = await pubsub.get_message(timeout=5)
        assert heard is not None and heard["data"] in (b"message.new 1", "message.new 1")
        assert await messages.get_message(sent.id) == sent
        assert not await messages.record_sent(dataclasses.replace(sent, seq=2), [ann])
        assert await pubsub.get_message(timeout=0.2) is None  # no announcement, none heard
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_wrong_conversation_rejected(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    with pytest.raises(ValueError, match="conversation"):
        await cache.add_message_to_conversation(uuid.uuid4(), make(uuid.uuid4(), 1))
    with pytest.raises(ValueError, match="conversation_id"):
        await cache.get_conversation_messages("nope", 5)


async def test_a_sent_message_is_written_through_in_one_call(redis: RedisClient) -> None:
    """`record_sent` (one script on one server, the calls at once on a cluster) does what the
    calls it stands for do: the message cached, added to its conversation's loaded list,
    counted unread in every recipient's cached counter, recorded in each member's cached list,
    the sender's typing cleared; nothing is created for a member whose list or counter is not
    cached."""
    messages, conversations = MessageCache(redis), ConversationCache(redis)
    conv, ann, bob, cat = (uuid.uuid4() for _ in range(4))
    await messages.set_conversation_messages(conv, [make(conv, 1)], complete=True)
    for user in (ann, bob):
        room = CachedConversation(id=conv, name="room", last_seq=1, read_seq=1)
        await conversations.set_user_conversations(user, [room])
        version = await messages.unread_fill_version(conv)
        assert await messages.fill_unread_count(conv, user, 0, as_of_seq=1, version=version)
    presence = PresenceCache(redis)
    typist = presence.typist(conv, ann)
    assert await presence.start_typing(typist)
    sent = dataclasses.replace(make(conv, 2), sender_id=ann, content="hi all")
    await messages.record_sent(sent, [ann, str(bob), cat], typist=typist)
    assert not await presence.is_typing(conv, ann)  # the sender's indicator went with it
    assert await messages.get_message(sent.id) == sent
    page = await messages.get_conversation_messages(conv, 10)
    assert page is not None and [m.seq for m in page] == [1, 2]
    assert await messages.cached_unread_count(conv, ann) == 0  # the sender's own
    assert await messages.cached_unread_count(conv, bob) == 1
    assert await messages.cached_unread_count(conv, cat) is None  # never filled: still a miss
    for user, unread in ((ann, 0), (bob, 1)):
        listed = await conversations.get_user_conversations(user)
        assert listed is not None
        assert (listed[0].last_message_text, listed[0].last_seq, listed[0].unread_count) == (
            "hi all",
            2,
            unread,
        )
    assert await conversations.get_user_conversations(cat) is None
    with pytest.raises(ValueError, match="seq"):
        await messages.record_sent(dataclasses.replace(sent, seq=None), [ann])

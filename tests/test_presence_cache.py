"""PresenceCache against a real server: the spec API, typing, leases, grace and sweep."""

from __future__ import annotations

import asyncio
import functools
import uuid

import pytest
from redis.asyncio import Redis

from caches import PresenceCache, PresenceStatus, PresenceTransition, keys
from caches._base import text
from caches.models import utcnow
from caches.presence import Announcement
from caches.redis import RedisClient, connect, node_url
from tests.conftest import MS, wait_for

ONLINE, AWAY, OFFLINE = PresenceStatus.ONLINE, PresenceStatus.AWAY, PresenceStatus.OFFLINE
NONE = PresenceTransition.NONE


@pytest.fixture
def redis(any_redis: RedisClient) -> RedisClient:
    """Every test here runs with each kind of client users build (see conftest)."""
    return any_redis


async def test_spec_online_offline_and_last_seen(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    user = uuid.uuid4()
    assert await cache.get_status(user) is OFFLINE
    assert await cache.get_last_seen(user) is None
    await cache.set_online(user)
    assert await cache.is_online(user) and await cache.get_status(user) is ONLINE
    assert 4 * 60_000 < await redis.pttl(keys.presence(user)) <= 5 * 60_000
    assert await cache.get_online_users() == [user]
    await cache.set_offline(user)
    assert not await cache.is_online(user)
    assert await cache.get_last_seen(user) is not None
    assert await cache.get_online_count() == 0


async def test_spec_ttl_expiry_and_extend(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    user = uuid.uuid4()
    await cache.set_online(user, 1000 * MS)
    assert await cache.extend_online(user, 60) is True
    other = uuid.uuid4()
    await cache.set_online(other, 100 * MS)

    async def other_expired() -> bool:
        return await cache.get_status(other) is OFFLINE

    await wait_for(other_expired)
    assert await cache.get_status(user) is ONLINE
    assert await cache.get_online_users() == [user]
    assert await cache.get_online_count() == 1
    assert await cache.extend_online(other) is False


async def test_bulk_status_one_call(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    users = [uuid.uuid4() for _ in range(3)]
    await cache.set_online(users[0])
    await cache.connect(users[1], "c1", away=True)
    assert await cache.get_bulk_status(users) == {
        users[0]: ONLINE,
        users[1]: AWAY,
        users[2]: OFFLINE,
    }
    assert await cache.get_bulk_status([]) == {}


async def test_typing_index_never_returns_expired(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    conv, ann, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert await cache.set_typing(conv, ann) is True
    assert await cache.set_typing(conv, ann) is False  # already typing: nothing to announce
    await cache.set_typing(conv, bob, 1000 * MS)
    assert 9_000 < await redis.pttl(keys.typing(conv, ann)) <= 10_000
    assert set(await cache.get_typing_users(conv)) == {ann, bob}
    assert await cache.is_typing(conv, bob)

    async def bob_expired() -> bool:
        return await cache.get_typing_users(conv) == [ann]

    await wait_for(bob_expired)

    async def key_expired() -> bool:
        # The index drops bob by the caller's clock, the key by the server's: within a moment.
        return not await cache.is_typing(conv, bob)

    await wait_for(key_expired, timeout=0.5)
    assert await cache.clear_typing(conv, ann) is True
    assert await cache.clear_typing(conv, ann) is False
    assert await cache.get_typing_users(conv) == []


async def test_typing_throttle_window(redis: RedisClient) -> None:
    """A repeat start inside the throttle window is not announced; after it, it is."""
    cache = PresenceCache(redis)
    conv, ann = uuid.uuid4(), uuid.uuid4()
    assert await cache.set_typing(conv, ann, throttle=1000 * MS) is True
    assert await cache.set_typing(conv, ann, throttle=1000 * MS) is False

    async def window_passed() -> bool:
        return await cache.set_typing(conv, ann, throttle=1000 * MS)

    await wait_for(window_passed)


async def test_two_connections_one_offline_after_both_and_grace(redis: RedisClient) -> None:
    """Two tabs: online once; the first close changes nothing; offline once, after the grace."""
    cache = PresenceCache(redis)
    user = uuid.uuid4()
    first = await cache.connect(user, "i1-a")
    second = await cache.connect(user, "i2-b")
    assert (first.transition, second.transition) == (PresenceTransition.WENT_ONLINE, NONE)
    assert (await cache.disconnect(user, "i1-a", 1000 * MS)).transition is NONE
    last = await cache.disconnect(user, "i2-b", 1000 * MS)
    assert last.transition is NONE and last.status is ONLINE
    assert (await cache.expire(user)).transition is NONE  # still inside the grace
    # Last seen is when the last connection closed, not when the grace ran out.
    left_at = await cache.get_last_seen(user)
    assert left_at is not None and abs((utcnow() - left_at).total_seconds()) < 5
    assert (await cache.get_bulk_presence([user]))[user] == (ONLINE, None)  # online: none shown

    async def went_offline() -> bool:
        return (await cache.expire(user)).transition is PresenceTransition.WENT_OFFLINE

    await wait_for(went_offline)
    assert await cache.get_status(user) is OFFLINE
    assert await cache.get_last_seen(user) == left_at
    assert (await cache.get_bulk_presence([user]))[user] == (OFFLINE, left_at)
    assert (await cache.expire(user)).transition is NONE


async def test_reconnect_inside_grace_does_not_flap(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    user = uuid.uuid4()
    await cache.connect(user, "c1")
    await cache.disconnect(user, "c1", 5)
    assert (await cache.connect(user, "c2")).transition is NONE
    assert (await cache.expire(user)).status is ONLINE


async def test_concurrent_connect_disconnect_from_two_clients(
    redis: RedisClient, redis_url: str
) -> None:
    """Two clients race connects and disconnects of one user: one online, one offline."""
    clients = [connect(redis_url), connect(redis_url)]
    caches = [PresenceCache(c) for c in clients]
    user = uuid.uuid4()
    try:
        for round_ in range(10):
            ups = await asyncio.gather(
                caches[0].connect(user, f"i1-{round_}"), caches[1].connect(user, f"i2-{round_}")
            )
            assert sorted(u.transition.value for u in ups) == ["none", "online"]
            downs = await asyncio.gather(
                caches[0].disconnect(user, f"i1-{round_}", 50 * MS),
                caches[1].disconnect(user, f"i2-{round_}", 50 * MS),
            )
            assert all(d.transition is NONE for d in downs)
            offline: list[PresenceTransition] = []
            await wait_for(functools.partial(_expire_both, caches, user, offline))
            assert offline == [PresenceTransition.WENT_OFFLINE]
            assert await caches[0].get_status(user) is OFFLINE
    finally:
        for c in clients:
            await c.aclose()


async def _expire_both(
    caches: list[PresenceCache], user: uuid.UUID, seen: list[PresenceTransition]
) -> bool:
    # Done when a step announced the offline transition: the status key alone can expire (its
    # TTL is the grace) a moment before any step has run.
    results = await asyncio.gather(caches[0].expire(user), caches[1].expire(user))
    seen.extend(r.transition for r in results if r.transition is not NONE)
    return bool(seen)


async def test_away_only_when_every_connection_is_away(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    user = uuid.uuid4()
    await cache.connect(user, "phone")
    await cache.connect(user, "laptop")
    assert (await cache.set_away(user, "phone", True)).transition is NONE
    went_away = await cache.set_away(user, "laptop", True)
    assert went_away.transition is PresenceTransition.WENT_AWAY
    assert await cache.get_status(user) is AWAY
    back = await cache.set_away(user, "phone", False)
    assert back.transition is PresenceTransition.WENT_ONLINE
    # The heartbeat keeps the state it is given.
    assert (await cache.heartbeat(user, "phone", away=False)).status is ONLINE


async def test_sweep_by_two_instances_announces_each_user_once(redis: RedisClient) -> None:
    """Leases of a dead instance expire; two sweepers running at once report each user once."""
    caches = [PresenceCache(redis), PresenceCache(redis)]
    users = [uuid.uuid4() for _ in range(30)]
    survivor = uuid.uuid4()
    for user in users:
        await caches[0].connect(user, "dead-instance", 1000 * MS)
    await caches[1].connect(survivor, "live", 60)
    assert await caches[1].get_online_count() == 31
    seen: list[uuid.UUID] = []

    async def all_swept() -> bool:
        batches = await asyncio.gather(caches[0].sweep(limit=7), caches[1].sweep(limit=7))
        for batch in batches:
            for update in batch:
                assert update.transition is PresenceTransition.WENT_OFFLINE
                seen.append(update.user_id)
        return len(seen) >= len(users)

    await wait_for(all_swept)
    assert sorted(seen) == sorted(users)
    assert await caches[0].get_online_users() == [survivor]
    assert await caches[0].sweep() == []


async def test_heartbeat_reasserts_a_lost_lease(redis: RedisClient) -> None:
    """After Redis lost everything, a heartbeat brings the user back online."""
    cache = PresenceCache(redis)
    user = uuid.uuid4()
    await cache.connect(user, "c1")
    await redis.flushdb()
    update = await cache.heartbeat(user, "c1")
    assert update.status is ONLINE and update.transition is PresenceTransition.WENT_ONLINE
    assert await cache.get_online_users() == [user]


async def test_typing_announcement_published_atomically_only_when_announced(
    redis: RedisClient,
) -> None:
    cache = PresenceCache(redis)
    conv, ann = uuid.uuid4(), uuid.uuid4()
    channel = keys.conversation_channel(conv)  # the conversation's slot: a key of the script
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)

    async def next_message() -> str:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None:
                return text(msg["data"])

    assert await cache.set_typing(conv, ann, announce=Announcement(channel, b"start-1"))
    assert not await cache.set_typing(conv, ann, announce=Announcement(channel, b"start-2"))
    assert await cache.clear_typing(conv, ann, announce=Announcement(channel, b"stop-1"))
    assert not await cache.clear_typing(conv, ann, announce=Announcement(channel, b"stop-2"))
    # A typist prepared once serves every later start and stop, each announced as it says.
    typist = cache.typist(
        conv,
        ann,
        throttle=60_000 * MS,
        started=Announcement(channel, b"start-3"),
        stopped=Announcement(channel, b"stop-3"),
    )
    assert await cache.start_typing(typist)
    assert not await cache.start_typing(typist)  # inside the throttle window
    assert await cache.get_typing_users(conv) == [ann]
    assert await cache.stop_typing(typist)
    assert not await cache.stop_typing(typist)
    assert await cache.start_typing(typist)
    received = [await asyncio.wait_for(next_message(), 2) for _ in range(5)]
    assert received == ["start-1", "stop-1", "start-3", "stop-3", "start-3"]
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_typing_announcement_sharded_reaches_a_sharded_subscriber(cluster_url: str) -> None:
    """On a cluster the scripts announce with SPUBLISH: a sharded subscriber hears it, in the
    same atomic step, only when announced."""
    client = connect(cluster_url)
    cache = PresenceCache(client)
    conv, ann = uuid.uuid4(), uuid.uuid4()
    channel = keys.conversation_channel(conv)
    subscriber = Redis.from_url(node_url(cluster_url, "127.0.0.1", _port(cluster_url)))
    pubsub = subscriber.pubsub()
    await pubsub.execute_command("SSUBSCRIBE", channel)
    assert (await pubsub.parse_response(timeout=2))[0] == b"ssubscribe"
    try:
        sharded = functools.partial(Announcement, channel, sharded=True)
        assert await cache.set_typing(conv, ann, announce=sharded(b"start-1"))
        assert not await cache.set_typing(conv, ann, announce=sharded(b"start-2"))
        assert await cache.clear_typing(conv, ann, announce=sharded(b"stop-1"))
        received = [(await pubsub.parse_response(timeout=2))[2] for _ in range(2)]
        assert received == [b"start-1", b"stop-1"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await subscriber.aclose()
        await client.aclose()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_bulk_presence_with_last_seen(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    ann, bob, cat = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await cache.connect(ann, "c1")
    await cache.connect(bob, "c2")
    await cache.disconnect(bob, "c2", None)
    found = await cache.get_bulk_presence([ann, bob, cat])
    assert found[ann] == (ONLINE, None)
    assert found[bob][0] is OFFLINE and found[bob][1] is not None
    assert found[cat] == (OFFLINE, None)


async def test_renew_many_steps_every_connection_in_order(redis: RedisClient) -> None:
    """One batch (more than one script call's worth, a user twice, one away) gives each
    connection its own update, in order, exactly as single renewals would."""
    cache = PresenceCache(redis)
    users = [uuid.uuid4() for _ in range(450)]
    leases = [(u, f"c{i}", False) for i, u in enumerate(users)]
    leases.append((users[0], "c-second", False))
    leases.append((users[1], "c-away", True))
    updates = await cache.renew_many(leases, lease=60)
    assert [u.user_id for u in updates] == [u for u, _, _ in leases]
    assert all(u.transition is PresenceTransition.WENT_ONLINE for u in updates[:450])
    assert updates[450].transition is NONE and updates[451].transition is NONE
    assert all(u.status is ONLINE and u.next_check is not None for u in updates)
    statuses = await cache.get_bulk_status(users)
    assert set(statuses.values()) == {ONLINE}
    assert await cache.get_online_count() == 450
    assert await redis.hlen(keys.presence_conns(users[0])) == 3  # two leases and the status
    again = await cache.renew_many([(u, f"c{i}", True) for i, u in enumerate(users[2:5], start=2)])
    assert [u.transition for u in again] == [PresenceTransition.WENT_AWAY] * 3


async def test_disconnect_many_leaves_each_user_a_grace(redis: RedisClient) -> None:
    cache = PresenceCache(redis)
    users = [uuid.uuid4() for _ in range(3)]
    await cache.renew_many([(u, "c", False) for u in users] + [(users[0], "d", False)])
    closed = await cache.disconnect_many([(u, "c") for u in users], grace=0.2)
    assert [u.transition for u in closed] == [NONE] * 3  # online through the grace
    assert set((await cache.get_bulk_status(users)).values()) == {ONLINE}
    await asyncio.sleep(0.25)  # the grace itself is what is tested: let it lapse
    expired = [await cache.expire(u) for u in users]
    assert [u.status for u in expired] == [ONLINE, OFFLINE, OFFLINE]  # users[0] keeps "d"


async def test_a_node_that_forgot_the_scripts_runs_them_again(redis: RedisClient) -> None:
    """A restarted or newly promoted node has no scripts: the step is sent as EVAL, to the
    node of its keys only (never a SCRIPT LOAD to every primary, a dead one among them)."""
    presence = PresenceCache(redis)
    user = uuid.uuid4()
    await redis.script_flush()
    update = await presence.connect(user, "c1", 5)
    assert update.transition is PresenceTransition.WENT_ONLINE
    assert (await presence.connect(user, "c2", 5)).transition is PresenceTransition.NONE

"""SessionCache against a real server."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio.client import PubSub

from caches import SessionCache, SessionData, keys
from caches._base import text
from caches.models import Revocation
from caches.redis import RedisClient
from tests.conftest import MS, wait_for


@pytest.fixture
def redis(any_redis: RedisClient) -> RedisClient:
    """Every test here runs with each kind of client users build (see conftest)."""
    return any_redis


async def test_set_get_delete(redis: RedisClient) -> None:
    """A stored session reads back equal; after delete it is a miss."""
    cache = SessionCache(redis)
    data = SessionData(user_id=uuid.uuid4(), wallet_address="abc", username="ann")
    await cache.set("s1", data)
    assert await cache.get("s1") == data
    assert await cache.delete("s1") is True
    assert await cache.get("s1") is None
    assert await cache.delete("s1") is False


async def test_default_ttl_is_fifteen_minutes(redis: RedisClient) -> None:
    cache = SessionCache(redis)
    await cache.set("s1", SessionData(user_id=uuid.uuid4()))
    assert 14 * 60_000 < await redis.pttl(keys.session("s1")) <= 15 * 60_000


async def test_ttl_expiry_and_extend(redis: RedisClient) -> None:
    """A session expires at its TTL; extend pushes the expiry (also of its index entry)."""
    cache = SessionCache(redis)
    user = uuid.uuid4()
    await cache.set("short", SessionData(user_id=user), 1000 * MS)
    await cache.set("long", SessionData(user_id=user), 1000 * MS)
    assert await cache.extend("long", 60, user_id=user) is True
    assert await redis.pttl(keys.user_session(user, "long")) > 50_000

    async def short_gone() -> bool:
        return await cache.get("short") is None

    await wait_for(short_gone)
    assert await cache.get("long") is not None
    assert set(await cache.get_user_sessions(user)) == {"long"}
    assert await cache.extend("short") is False
    assert await cache.extend("long", 90) is True


async def test_touch_updates_last_activity_and_keeps_ttl(redis: RedisClient) -> None:
    cache = SessionCache(redis)
    data = SessionData(user_id=uuid.uuid4())
    await cache.set("s1", data, 30)
    await asyncio.sleep(5 * MS)
    assert await cache.touch("s1") is True
    touched = await cache.get("s1")
    assert touched is not None and touched.last_activity > data.last_activity
    assert touched.created_at == data.created_at
    assert 25_000 < await redis.pttl(keys.session("s1")) <= 30_000
    assert await cache.touch("missing") is False


async def test_multi_device_index_and_bulk_delete(redis: RedisClient) -> None:
    """Each device's session is listed under its user; delete_user_sessions logs out all."""
    cache = SessionCache(redis)
    ann, bob = uuid.uuid4(), uuid.uuid4()
    for sid in ("phone", "laptop", "tab"):
        await cache.set(sid, SessionData(user_id=ann))
    await cache.set("bob1", SessionData(user_id=bob))
    assert set(await cache.get_user_sessions(ann)) == {"phone", "laptop", "tab"}
    assert await cache.delete_user_sessions(ann) == 3
    assert await cache.get_user_sessions(ann) == {}
    assert await cache.get("phone") is None
    assert set(await cache.get_user_sessions(bob)) == {"bob1"}


async def test_blacklist_with_ttl(redis: RedisClient) -> None:
    cache = SessionCache(redis)
    assert await cache.is_token_blacklisted("jti1") is False
    await cache.invalidate_token("jti1", 1000 * MS)
    assert await cache.is_token_blacklisted("jti1") is True

    async def lapsed() -> bool:
        return not await cache.is_token_blacklisted("jti1")

    await wait_for(lapsed)


async def test_get_for_auth_reads_session_and_blacklist(redis: RedisClient) -> None:
    cache = SessionCache(redis)
    data = SessionData(user_id=uuid.uuid4())
    await cache.set("s1", data)
    assert await cache.get_for_auth("s1", "j1") == (data, False)
    await cache.invalidate_token("j1")
    assert await cache.get_for_auth("s1", "j1") == (data, True)
    assert await cache.get_for_auth("nope", "j2") == (None, False)


async def _next_message(pubsub: PubSub) -> str:
    while True:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if msg is not None:
            return text(msg["data"])


async def test_revocations_are_published(redis: RedisClient) -> None:
    """Deleting a session and blacklisting a token announce it, so gateways can close sockets."""
    cache = SessionCache(redis)
    await cache.set("s1", SessionData(user_id=uuid.uuid4()))
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.REVOCATIONS_CHANNEL)
    await cache.delete("s1")
    assert await asyncio.wait_for(_next_message(pubsub), 2) == '{"session_id":"s1"}'
    await cache.invalidate_token("j9")
    announced = Revocation.from_json(await asyncio.wait_for(_next_message(pubsub), 2))
    assert announced.token_id == "j9" and announced.session_id is None
    # It says when it ends (the blacklist entry's 24 h), so gateways remember it that long.
    assert announced.until is not None
    assert abs(announced.until - (time.time() + 86_400)) < 60
    await pubsub.aclose()  # type: ignore[no-untyped-call]

"""Attach and detach of one client on a real Redis and the in-memory bus: the orders and the
independence the gateway relies on."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterable
from pathlib import Path
from typing import Any

import pytest

from caches import (
    CacheUnavailable,
    ConversationCache,
    EpochMark,
    InstanceLiveness,
    MessageCache,
    PresenceCache,
    SessionCache,
    connect,
    keys,
)
from caches.redis import RedisClient
from gateway.auth import Authenticator, TokenVerifier
from gateway.bus import MemoryBroker, MemoryBus, Publisher
from gateway.config import Settings
from gateway.handlers import HandlerContext, Limits, RequestBudget
from gateway.protocol import Close, events
from gateway.realtime import Admission, ClientServer, Hub, TokenExpiry
from gateway.services import CacheRepair, ConversationService, PresenceService, TypingService
from gateway.state import ClientState
from gateway.store import SqliteStore
from tests.fakes import RecordingConnection, client_state
from tests.test_handlers import RecordingMessages

SETTINGS = Settings.flat(
    jwt_secret="lifecycle-test-secret-0123456789abcdef", grace=0.2, instance_id="lc"
)


async def _no_join(users: Iterable[uuid.UUID], conversation: uuid.UUID) -> None:
    pass


# Conversation lists are not what these tests read; a cache on a client never used.
_NO_CACHE = ConversationCache(connect("redis://127.0.0.1:1"))
_NO_REPAIR = CacheRepair(MessageCache(connect("redis://127.0.0.1:1")), _NO_CACHE, 1.0)


def _wiring(store: SqliteStore, bus: MemoryBus) -> dict[str, Any]:
    """A conversation service's parts here: this store, this bus, no cache."""
    return {
        "store": store,
        "publisher": Publisher(bus.publish),
        "join_local": _no_join,
        "cache": _NO_CACHE,
        "side_budget": 1.0,
        "repair": _NO_REPAIR,
    }


class RacingConversations(ConversationService):
    """Another instance creates a conversation for the user while the store is being read;
    the read returns the list from before it."""

    def __init__(self, store: SqliteStore, bus: MemoryBus, created: uuid.UUID) -> None:
        super().__init__(**_wiring(store, bus))
        self._bus = bus
        self._created = created

    async def memberships(self, user_id: uuid.UUID) -> dict[uuid.UUID, int]:
        before = await super().memberships(user_id)
        frame = events.conversation_added({"id": str(self._created)})
        await Publisher(self._bus.publish).user(user_id, frame, join=self._created)
        for _ in range(3):  # the read takes a few loop iterations; the event arrives meanwhile
            await asyncio.sleep(0)
        return before


class BrokenTyping(TypingService):
    async def clear_all(self, client: ClientState) -> None:
        raise CacheUnavailable("typing cleanup failed")


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    coro.close()


async def _no_reassert(channels: frozenset[bytes] | None) -> None:
    raise AssertionError("the in-memory bus never reconnects")


def presence_service(
    redis: RedisClient, bus: MemoryBus, hub: Hub, metrics: Counter[str]
) -> PresenceService:
    return PresenceService(
        presence=PresenceCache(redis),
        sessions=SessionCache(redis),
        epoch=EpochMark(redis, SETTINGS.presence.instance_id),
        liveness=InstanceLiveness(redis, SETTINGS.presence.instance_id),
        publisher=Publisher(bus.publish),
        settings=SETTINGS.presence,
        auth=SETTINGS.auth,
        budget=SETTINGS.redis.timeout,
        clients=hub.clients,
        metrics=metrics,
    )


def server(
    redis: RedisClient,
    bus: MemoryBus,
    conversations: ConversationService,
    typing: TypingService | None = None,
) -> tuple[ClientServer, Hub]:
    hub = Hub(bus, 1.0)
    metrics: Counter[str] = Counter()
    presence = presence_service(redis, bus, hub, metrics)
    typing = typing or TypingService(
        PresenceCache(redis), Publisher(bus.publish), SETTINGS.presence
    )
    context = HandlerContext(
        presence,
        typing,
        conversations,
        RecordingMessages(),
        hub,
        Limits(10),
        metrics,
        RequestBudget(1.0),
    )
    authenticator = Authenticator(TokenVerifier(SETTINGS.auth), SessionCache(redis))
    admission = Admission(SETTINGS.limits, metrics, hub)
    expiry = TokenExpiry(authenticator, hub, SETTINGS.auth.token_leeway)
    clients = ClientServer(
        settings=SETTINGS,
        authenticator=authenticator,
        hub=hub,
        presence=presence,
        typing=typing,
        conversations=conversations,
        context=context,
        metrics=metrics,
        spawn=_spawn,
        expiry=expiry,
        admission=admission,
    )
    return clients, hub


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore(str(tmp_path / "store.sqlite3")).open()
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def running(bus: MemoryBus, hub: Hub) -> AsyncIterator[None]:
    runner = asyncio.create_task(bus.run(hub.deliver, _no_reassert))
    try:
        while not bus.connected:
            await asyncio.sleep(0)
        yield
    finally:
        runner.cancel()


async def test_attach_subscribes_before_reading_memberships(
    redis: RedisClient, store: SqliteStore
) -> None:
    bus = MemoryBus(MemoryBroker())
    created = uuid.uuid4()
    clients, hub = server(redis, bus, RacingConversations(store, bus, created))
    async with running(bus, hub):
        conn = RecordingConnection(client_state())
        assert await clients.attach(conn)
        assert hub.is_member(conn.user_id, created)
        assert bus.subscribed(keys.conversation_channel(created))
        assert conn.received == [
            {"type": "conversation.added", "conversation": {"id": str(created)}}
        ]


async def test_detach_cuts_the_lease_even_when_typing_cleanup_fails(
    redis: RedisClient, store: SqliteStore
) -> None:
    bus = MemoryBus(MemoryBroker())
    conversations = ConversationService(**_wiring(store, bus))
    clients, hub = server(
        redis,
        bus,
        conversations,
        BrokenTyping(PresenceCache(redis), Publisher(bus.publish), SETTINGS.presence),
    )
    async with running(bus, hub):
        conn = RecordingConnection(client_state())
        assert await clients.attach(conn)
        lease = await redis.zscore(keys.presence_leases(conn.user_id), conn.id)
        assert lease is not None and lease > (time.time() + 30) * 1000  # the 60 s lease
        await clients.detach(conn)
        scored = await redis.zrange(keys.presence_leases(conn.user_id), 0, -1, withscores=True)
        leases = {str(pair[0]): float(pair[1]) for pair in scored}
        assert conn.id not in leases  # the connection's lease is gone; the grace one is short
        assert list(leases) == ["@grace"]
        assert leases["@grace"] <= (time.time() + SETTINGS.presence.grace) * 1000 + 50


async def test_events_that_arrive_while_attaching_follow_the_hello(
    redis: RedisClient, store: SqliteStore
) -> None:
    """The hub delivers from the moment the client subscribed, before `hello` is sent: what
    arrives meanwhile is held and follows it (a client may rely on `hello` coming first)."""
    bus = MemoryBus(MemoryBroker())
    created = uuid.uuid4()
    clients, hub = server(redis, bus, RacingConversations(store, bus, created))
    async with running(bus, hub):
        conn = RecordingConnection(client_state(), greeted=False)
        assert await clients.attach(conn)
        assert conn.received == []  # held
        clients._greet(conn, "127.0.0.1")
        assert [f["type"] for f in conn.received] == ["hello", "conversation.added"]


async def test_a_connection_the_drain_finds_attaching_gets_hello_then_reconnect(
    redis: RedisClient, store: SqliteStore
) -> None:
    """The drain lists a connection whose attach has not finished (no `hello` yet): it leaves it
    to be sent away right after its `hello`, rather than closing it with neither frame."""
    bus = MemoryBus(MemoryBroker())
    conversations = ConversationService(**_wiring(store, bus))
    clients, hub = server(redis, bus, conversations)
    async with running(bus, hub):
        attaching = RecordingConnection(client_state(), greeted=False)
        assert await clients.attach(attaching)
        greeted = RecordingConnection(client_state())
        assert await clients.attach(greeted)
        await clients.drain(0)
        assert greeted.closes == [(Close.SERVICE_RESTART, "service restart")]
        assert attaching.closes == [] and attaching.received == []
        clients._greet(attaching, "127.0.0.1")
        assert [f["type"] for f in attaching.received] == ["hello", "reconnect"]
        assert attaching.closes == [(Close.SERVICE_RESTART, "service restart")]


async def test_a_burst_of_reasserts_shares_runs(
    redis: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover that moves many channels asks for a re-assertion per channel: those that
    arrive while one runs share the next (which starts after them), so 30 asks cost 2 runs."""
    bus = MemoryBus(MemoryBroker())
    hub = Hub(bus, 1.0)
    presence = presence_service(redis, bus, hub, Counter())
    await presence.mark_epoch()
    caplog.set_level("INFO", logger="gateway.services.presence")
    await asyncio.gather(*(presence.reassert() for _ in range(30)))
    runs = [r for r in caplog.records if r.getMessage().startswith("re-asserted")]
    assert len(runs) == 2, [r.getMessage() for r in runs]
    await presence.reassert()  # one asked alone, after them, runs
    runs = [r for r in caplog.records if r.getMessage().startswith("re-asserted")]
    assert len(runs) == 3

"""Wiring, start-up, the presence maintenance loop and graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from websockets.asyncio.server import Server, ServerConnection, serve

from caches import ClientOptions, PresenceCache, SessionCache, connect, keys
from caches.redis import RedisClient, configured_or_embedded
from gateway import typing as typing_handlers
from gateway.auth import Authenticator, TokenVerifier
from gateway.autopipe import AutoPipelineRedis
from gateway.bus import Bus
from gateway.config import Settings
from gateway.connection import Connection
from gateway.fastlane import FastLane
from gateway.http import HttpRoutes
from gateway.hub import Hub
from gateway.lifecycle import serve_client
from gateway.logs import redacting_logger
from gateway.presence import announce, announce_all
from gateway.protocol import Close, event
from gateway.store import SqliteStore, Store

__all__ = ["RUNTIME_FILE", "Gateway", "run"]

log = logging.getLogger(__name__)

RUNTIME_FILE = "presence-gateway.runtime.json"
"""Written while serving with the embedded Redis, so `presence-gateway token` finds it."""

_TICK = 0.25
_EPOCH_TTL = 86_400


class Gateway:
    """The services one instance runs, shared by every connection."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        auto: RedisClient,
        redis_url: str,
        store: Store,
        fastlane: FastLane | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.auto = auto
        self.store = store
        self.presence = PresenceCache(auto)
        # Typing is the hottest path: its scripts take the fast lane when there is one (the
        # lane only offers what scripts need, which is all the typing calls use).
        self.typing = PresenceCache(cast(RedisClient, fastlane)) if fastlane else self.presence
        self.sessions = SessionCache(auto)
        self.authenticator = Authenticator(TokenVerifier(settings), self.sessions)
        self.lease = settings.lease_ttl
        self.lease_ms = int(settings.lease_ttl * 1000)
        self.typing_ttl_ms = int(settings.typing_ttl * 1000)
        self.metrics: Counter[str] = Counter()
        self.draining = False
        self.hub = Hub(self._subscribe, self._unsubscribe)
        self.bus = Bus(
            redis_url,
            auto,
            settings.instance_id,
            settings.probe_interval,
            self.hub.deliver,
            self.reassert,
        )
        self.bus.subscribe(keys.REVOCATIONS_CHANNEL)
        self._reasserting = asyncio.Lock()
        self._epoch_key = keys.gateway_epoch(settings.instance_id)
        self._tasks: asyncio.TaskGroup | None = None
        self._expiries: list[tuple[float, uuid.UUID]] = []
        self._next_sweep = 0.0

    # Hooks for the hub

    def _subscribe(self, channel: str) -> None:
        self.bus.subscribe(channel)

    def _unsubscribe(self, channel: str) -> None:
        self.bus.unsubscribe(channel)

    # Tasks

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the gateway's task group (it owns every background task)."""
        if self._tasks is None:
            coro.close()
            return
        self._tasks.create_task(coro)

    def close_connection(self, conn: Connection, code: Close, reason: str) -> None:
        self.metrics[f"closed_{code.name.lower()}"] += 1
        self.spawn(_close(conn.ws, code, reason))

    # Connection lifecycle

    async def attach(self, conn: Connection) -> None:
        """A connection authenticated: register it, take its lease, announce if first."""
        # A user already connected here has its memberships in the hub (kept current by
        # conversation.added); only a user's first local connection reads them from the store.
        conversations = self.hub.user_conversations.get(conn.user_id)
        if conversations is None:
            conversations = await self.store.user_conversation_ids(conn.user_id)
        self.hub.add(conn, conversations)
        self.metrics["connections_opened"] += 1
        update = await self.presence.connect(conn.user_id, conn.id, self.lease)
        await announce(self, update)

    async def detach(self, conn: Connection) -> None:
        """A connection ended: stop its typing, cut its lease to the grace, schedule the end."""
        last_local = self.hub.remove(conn)
        try:
            await typing_handlers.clear_all(self, conn)
            update = await self.presence.disconnect(conn.user_id, conn.id, self.settings.grace)
            await announce(self, update)
            if last_local and update.next_check is not None:
                heapq.heappush(
                    self._expiries, (time.monotonic() + self.settings.grace, conn.user_id)
                )
        except RedisError as exc:
            # The lease expires by itself; the sweep announces the user offline.
            log.warning("detach of %s: Redis unavailable: %s", conn.id, exc)

    async def renew(self, conn: Connection) -> None:
        """Heartbeat: the lease and the session, one pipelined round trip."""
        update, alive = await asyncio.gather(
            self.presence.heartbeat(conn.user_id, conn.id, self.lease, away=conn.away),
            self.sessions.extend(conn.session_id, self.settings.session_ttl, user_id=conn.user_id),
        )
        await announce(self, update)
        if not alive:
            conn.send(event("session.revoked", reason="session expired"))
            conn.close(Close.SESSION_REVOKED, "session expired")

    async def reassert(self) -> None:
        """Redis came back (the bus reconnected) or lost its data: every live connection takes
        its lease again. After data loss its session is restored too, and nothing is announced
        (watchers saw no change); otherwise real transitions (a lease that lapsed meanwhile)
        are announced as usual."""
        async with self._reasserting:
            lost = await self.auto.set(self._epoch_key, "1", ex=_EPOCH_TTL, nx=True)
            connections = list(self.hub.all_connections())
            ttl = self.settings.session_ttl
            if lost:
                await asyncio.gather(
                    *(
                        self.sessions.set(c.session_id, c.session, ttl, if_missing=True)
                        for c in connections
                    )
                )
            updates = await asyncio.gather(
                *(
                    self.presence.heartbeat(c.user_id, c.id, self.lease, away=c.away)
                    for c in connections
                )
            )
            if not lost:
                await announce_all(self, updates)
            log.info(
                "re-asserted %d presence leases%s",
                len(connections),
                " and sessions after Redis lost its data" if lost else "",
            )

    # Maintenance: heartbeat timeouts, grace ends, sweeps

    async def maintain(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            now = time.monotonic()
            self._close_silent(now)
            try:
                await self._expire_due(now)
                if now >= self._next_sweep:
                    self._next_sweep = now + self.settings.sweep_interval
                    await self.auto.expire(self._epoch_key, _EPOCH_TTL)  # never re-creates it
                    await announce_all(self, await self.presence.sweep())
            except RedisError as exc:
                log.warning("presence maintenance: Redis unavailable: %s", exc)
            except Exception:  # the task's edge: log, keep maintaining
                log.exception("presence maintenance failed")

    def _close_silent(self, now: float) -> None:
        deadline = now - self.settings.lease_ttl
        for conn in self.hub.all_connections():
            if conn.last_heard < deadline:
                conn.close(Close.HEARTBEAT_TIMEOUT, "heartbeat timeout")

    async def _expire_due(self, now: float) -> None:
        due: list[uuid.UUID] = []
        while self._expiries and self._expiries[0][0] <= now:
            due.append(heapq.heappop(self._expiries)[1])
        if due:
            updates = await asyncio.gather(*(self.presence.expire(u) for u in set(due)))
            await announce_all(self, updates)

    # Drain

    async def drain(self) -> None:
        """Tell every client to reconnect elsewhere (jittered), then close them 1012."""
        self.draining = True
        window_ms = int(self.settings.drain_timeout * 500)
        for conn in self.hub.all_connections():
            conn.send(event("reconnect", after_ms=random.randint(0, max(window_ms, 1))))
            conn.close(Close.SERVICE_RESTART, "service restart")


async def _close(ws: ServerConnection, code: Close, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(int(code), reason)


@contextlib.contextmanager
def _redis_url(settings: Settings) -> Iterator[str]:
    with configured_or_embedded(settings.redis_url) as url:
        if settings.redis_url:
            yield url
            return
        runtime = Path(RUNTIME_FILE)  # so `presence-gateway token` finds the embedded server
        runtime.write_text(json.dumps({"redis_url": url, "pid": os.getpid()}))
        try:
            yield url
        finally:
            with contextlib.suppress(FileNotFoundError):
                runtime.unlink()


async def run(settings: Settings, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with _redis_url(settings) as redis_url:
        redis = connect(redis_url, ClientOptions())
        # Cluster clients route per slot; auto-pipelining and the fast lane are for standalone.
        auto = AutoPipelineRedis(redis) if isinstance(redis, aioredis.Redis) else None
        fastlane = FastLane(redis_url) if auto is not None else None
        store = await SqliteStore(settings.store).open()
        gw = Gateway(settings, redis, auto or redis, redis_url, store, fastlane)
        with contextlib.suppress(RedisError):  # Redis may be down at start: /readyz says so
            await redis.set(gw._epoch_key, "1", ex=_EPOCH_TTL, nx=True)
        routes = HttpRoutes(gw)
        try:
            async with asyncio.TaskGroup() as tasks:
                gw._tasks = tasks
                background = [
                    tasks.create_task(gw.bus.run()),
                    tasks.create_task(gw.maintain()),
                ]
                if auto is not None:
                    background.append(tasks.create_task(auto.run()))
                if fastlane is not None:
                    background.append(tasks.create_task(fastlane.run()))
                async with serve(
                    lambda ws: serve_client(gw, ws),
                    settings.host,
                    settings.port,
                    process_request=routes.process_request,
                    origins=_origins(settings),
                    max_size=settings.max_frame_bytes,
                    compression="deflate" if settings.compression else None,
                    ping_interval=None,
                    close_timeout=2,
                    logger=redacting_logger(),
                ) as server:
                    line = _ready_line(settings, server, redis_url)
                    print(line, flush=True)
                    if on_ready is not None:
                        on_ready(line)
                    await stop.wait()
                    log.info("stopping: draining %d connections", len(gw.hub.connections))
                    server.close(close_connections=False)
                    await gw.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(server.wait_closed(), settings.drain_timeout)
                for task in background:
                    task.cancel()
        finally:
            gw._tasks = None
            await store.close()
            await redis.aclose()


def _origins(settings: Settings) -> list[Any] | None:
    allowed = settings.origins
    if allowed is None:
        return None
    return [None, *allowed]  # None: requests without an Origin header (non-browser clients)


def _ready_line(settings: Settings, server: Server, redis_url: str) -> str:
    host, port = next(iter(s.getsockname()[:2] for s in server.sockets))
    redis = "embedded Valkey" if not settings.redis_url else _safe_url(redis_url)
    return (
        f"presence-gateway {settings.instance_id} listening on ws://{host}:{port}/ws "
        f"(redis: {redis}; store: {settings.store})"
    )


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url

"""The composition root: settings in, every part built and wired, served until a signal, then
drained. Nothing imports this module but the command that serves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
from websockets.asyncio.server import Server, serve

from caches import (
    CacheUnavailable,
    ConversationCache,
    EpochMark,
    InstanceLiveness,
    MessageCache,
    PresenceCache,
    QuotaCache,
    SessionCache,
)
from caches.errors import translated
from caches.redis import RedisClient
from gateway.auth import Authenticator, TokenVerifier
from gateway.bus import Publisher
from gateway.bus.base import Bus
from gateway.config import Settings
from gateway.dev import DevRoutes
from gateway.handlers import HandlerContext, Limits, RequestBudget
from gateway.handshake import json_refusals
from gateway.http import HttpRoutes
from gateway.limits import (
    CollectAfterFaults,
    raise_open_files_limit,
    settle_garbage_collector,
    tune_garbage_collector,
)
from gateway.logs import redacting_logger
from gateway.metrics import FRAMES_OUT, Latency, MetricsExport, every_series
from gateway.protocol import events
from gateway.realtime import Admission, ClientServer, Hub, TokenExpiry
from gateway.redis_side import RedisSide, redis_side
from gateway.runtime import redis_url
from gateway.services import (
    CacheRepair,
    ConversationService,
    MessageService,
    PresenceService,
    PresenceVisibility,
    Quota,
    Quotas,
    Revocations,
    TypingService,
)
from gateway.store import Store, describe_store, open_store
from gateway.tasks import Spawner

__all__ = ["run"]

log = logging.getLogger(__name__)


async def run(settings: Settings, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # First, so a store that cannot be opened stops start-up before anything else starts.
    store_latency = Latency("store", "One store call: queue, thread hop and the work")
    store = await open_store(
        settings.store.url,
        store_latency,
        pool_size=settings.store.pool_size,
        password_file=settings.store.password_file,
        timeout=settings.redis.timeout,
    )
    cap = raise_open_files_limit(settings.limits.max_connections)
    settings = settings.replaced(max_connections=cap)
    tune_garbage_collector()
    try:
        await _serve(settings, store, store_latency, stop, on_ready)
    finally:
        await store.close()


async def _serve(
    settings: Settings,
    store: Store,
    store_latency: Latency,
    stop: asyncio.Event,
    on_ready: Callable[[str], None] | None,
) -> None:
    with redis_url(settings.redis.url) as url:
        async with redis_side(settings, url) as side:
            built = await _build(settings, store, store_latency, side)
            await _run(built, url, stop, on_ready)


@dataclasses.dataclass
class _Built:
    """Every part of a running instance, wired, before anything runs."""

    settings: Settings
    store: Store
    pipeline: Callable[[], Coroutine[Any, Any, None]]
    bus: Bus
    hub: Hub
    presence: PresenceService
    clients: ClientServer
    requests: RequestBudget
    repair: CacheRepair
    revocations: Revocations
    routes: HttpRoutes
    spawner: Spawner
    metrics: Counter[str]
    collector: CollectAfterFaults = dataclasses.field(default_factory=CollectAfterFaults)

    def jobs(self) -> list[Coroutine[Any, Any, None]]:
        """The instance-wide jobs that run until the instance stops."""
        return [
            self.pipeline(),
            self.bus.run(self.hub.deliver, self.reconnected),
            self.presence.maintain(),
            self.clients.watch_deadlines(),
            self.requests.enforce(),
            self.repair.run(),
            self.revocations.run(),
            self.store.watch(),
            self.collector.run(),
        ]

    async def reconnected(self, channels: frozenset[bytes] | None) -> None:
        # Messages published while the bus was away never reach this instance: say so first
        # (to the clients of the channels that were away: on a cluster, one shard's), so
        # clients recover from the store, then take the leases again. What failed writes left
        # stale in the caches goes before that, so the recovery reads miss it.
        self.collector.fault_over()
        await self.repair.drain()
        self.metrics["resyncs"] += 1
        if channels is None:
            self.hub.broadcast(events.resync())
        else:
            self.hub.send_to_topics(channels, events.resync())
        await self.presence.reassert()


async def _build(
    settings: Settings,
    store: Store,
    store_latency: Latency,
    side: RedisSide,
) -> _Built:
    budget = settings.redis.timeout
    client, bus, redis, redis_latency = side.client, side.bus, side.redis, side.latency
    metrics = every_series()
    spawner = Spawner()
    hub = Hub(bus, budget, spawn=spawner.spawn)
    publisher = Publisher(bus.publish, scripts_publish=side.scripts_publish)
    presence_cache, sessions = PresenceCache(client), SessionCache(client)
    revocations = Revocations(store, sessions, settings.auth.revocation_ttl)
    await revocations.load()
    hub.on_revocation = revocations.learn
    presence = PresenceService(
        presence=presence_cache,
        sessions=sessions,
        epoch=EpochMark(client, settings.presence.instance_id),
        liveness=InstanceLiveness(client, settings.presence.instance_id),
        publisher=publisher,
        settings=settings.presence,
        auth=settings.auth,
        budget=budget,
        clients=hub.clients,
        metrics=metrics,
        revocations=revocations,
        spawn=spawner.spawn,
    )
    typing = TypingService(presence_cache, publisher, settings.presence)
    message_cache, conversation_cache = MessageCache(client), ConversationCache(client)
    repair = CacheRepair(message_cache, conversation_cache, budget)
    conversations = ConversationService(
        store=store,
        publisher=publisher,
        join_local=hub.join_created,
        cache=conversation_cache,
        side_budget=budget / 4,
        repair=repair,
        metrics=metrics,
    )
    messages = MessageService(
        store=store,
        messages=message_cache,
        conversations=conversation_cache,
        publisher=publisher,
        members=conversations.members,
        typing=typing,
        side_budget=budget / 4,
        metrics=metrics,
        repair=repair,
    )
    hub.recover = messages.committed
    verifier = TokenVerifier(settings.auth)
    authenticator = Authenticator(verifier, sessions, revocations.refused, revocations.blacklisted)
    requests = RequestBudget(budget)
    admission = Admission(
        settings.limits, metrics, hub, trusted_proxies=settings.http.trusted_proxies
    )
    visibility = PresenceVisibility(settings.presence.presence_visibility, store)
    expiry = TokenExpiry(authenticator, hub, settings.auth.token_leeway)
    context = HandlerContext(
        presence=presence,
        typing=typing,
        conversations=conversations,
        messages=messages,
        topics=hub,
        limits=Limits(
            max_watched=settings.presence.max_watched,
            max_message_bytes=settings.limits.max_message_bytes,
            max_group_members=settings.limits.max_group_members,
        ),
        metrics=metrics,
        budget=requests,
        sessions=expiry,
        visibility=visibility,
        quotas=_quotas(settings, QuotaCache(client)),
    )
    clients = ClientServer(
        settings=settings,
        authenticator=authenticator,
        hub=hub,
        presence=presence,
        typing=typing,
        conversations=conversations,
        context=context,
        metrics=metrics,
        spawn=spawner.spawn,
        expiry=expiry,
        admission=admission,
    )

    routes = _http_routes(
        settings,
        redis,
        store=store,
        bus=bus,
        hub=hub,
        clients=clients,
        admission=admission,
        repair=repair,
        authenticator=authenticator,
        presence_cache=presence_cache,
        visibility=visibility,
        metrics=metrics,
        latencies=[redis_latency, store_latency, hub.fanout],
        dev=_dev_routes(settings, client, sessions, verifier),
    )
    return _Built(
        settings,
        store,
        side.pipeline,
        bus,
        hub,
        presence,
        clients,
        requests,
        repair,
        revocations,
        routes,
        spawner,
        metrics,
    )


def _http_routes(
    settings: Settings,
    redis: RedisClient,
    *,
    store: Store,
    bus: Bus,
    hub: Hub,
    clients: ClientServer,
    admission: Admission,
    repair: CacheRepair,
    authenticator: Authenticator,
    presence_cache: PresenceCache,
    visibility: PresenceVisibility,
    metrics: Counter[str],
    latencies: list[Latency],
    dev: DevRoutes | None,
) -> HttpRoutes:
    """Health, readiness (what it checks), metrics and the presence API on the WebSocket port."""

    async def readiness() -> list[str]:
        reasons = []
        if clients.draining:
            reasons.append("draining")
        if not bus.connected:
            reasons.append("pub/sub disconnected")
        trouble = store.trouble()
        if trouble is not None:
            reasons.append(f"store: {trouble}")
        try:
            async with asyncio.timeout(settings.redis.timeout):
                await translated(redis.ping())
        except (CacheUnavailable, TimeoutError):
            reasons.append("redis unreachable")
        return reasons

    export = MetricsExport(
        metrics,
        lambda: {
            "connections": ("Authenticated connections on this instance", len(hub.connections)),
            "connections_authenticating": ("Sockets awaiting an auth frame", admission.pending),
            "users": ("Users with a connection on this instance", len(hub.by_user)),
            "bus_channels": ("Pub/sub channels subscribed", bus.channel_count),
            "cache_repairs_pending": ("Stale cache entries waiting for Redis", repair.pending),
            "asyncio_tasks": ("Tasks on the event loop (a leak shows as growth)", _tasks()),
        },
        lambda: {
            "bus_reconnects": bus.reconnects,
            "deliveries": hub.delivered,
            "cache_repairs_refused": repair.refused,
            **{FRAMES_OUT[kind]: n for kind, n in hub.frames_out.items()},
        },
        latencies,
    )
    return HttpRoutes(
        readiness=readiness,
        metrics=export.render,
        authenticator=authenticator,
        presence=presence_cache,
        budget=settings.redis.timeout,
        metrics_token=settings.observability.metrics_token,
        metrics_here=not settings.observability.metrics_host,
        ws_gate=lambda ws: (
            "draining: reconnect to another instance"
            if clients.draining
            else admission.at_handshake(
                clients.address(ws),
                awaits_frame=ws.request is None or "Authorization" not in ws.request.headers,
            )
        ),
        visible=visibility.visible,
        dev=dev,
        same_origin_only=settings.auth.dev and not settings.http.allowed_origins,
    )


def _dev_routes(
    settings: Settings, redis: RedisClient, sessions: SessionCache, verifier: TokenVerifier
) -> DevRoutes | None:
    """The demo page and token route, with `--dev` and a secret to sign with."""
    secret = verifier.signing_secret
    if not settings.auth.dev or secret is None:
        return None
    return DevRoutes(
        redis=redis,
        sessions=sessions,
        secret=secret,
        budget=settings.redis.timeout,
        audience=settings.auth.jwt_audience,
        issuer=settings.auth.jwt_issuer,
    )


def _quotas(settings: Settings, fleet: QuotaCache) -> Quotas:
    return Quotas(
        {
            "send": Quota(settings.limits.user_send_rate, settings.limits.user_send_burst),
            "create": Quota(
                settings.limits.conversation_create_rate / 60,
                settings.limits.conversation_create_burst,
            ),
        },
        fleet,
        settings.redis.timeout / 4,
    )


async def _run(
    built: _Built, url: str, stop: asyncio.Event, on_ready: Callable[[str], None] | None
) -> None:
    """Run the jobs and the listeners until `stop`, then drain."""
    settings = built.settings
    # Before any job runs: its collection pauses nothing that keeps time (liveness beats).
    settle_garbage_collector()
    try:
        # The outer group owns the short jobs (closing handshakes, gap fills, lease batches),
        # awaited to their end; the inner one the instance's long jobs, cancelled after the
        # drain.
        async with anyio.create_task_group() as short_jobs:
            built.spawner.group = short_jobs
            async with anyio.create_task_group() as jobs:
                for job in built.jobs():
                    jobs.start_soon(_job, job)
                # Redis may be down at start: /readyz says so, the bus reconnects later.
                with anyio.move_on_after(settings.redis.timeout):
                    with contextlib.suppress(CacheUnavailable):
                        await built.presence.mark_epoch()
                        await built.presence.end_leftovers()
                        await built.presence.join()
                async with (
                    _metrics_listener(settings, built.routes) as metrics_server,
                    _listen(settings, built) as server,
                ):
                    line = _ready_line(
                        settings, server, metrics_server, url, built.routes.serves_demo
                    )
                    print(line, flush=True)
                    if on_ready is not None:
                        on_ready(line)
                    await stop.wait()
                    await _drain(built, server)
                jobs.cancel_scope.cancel()
    finally:
        built.spawner.group = None


def _listen(settings: Settings, built: _Built) -> contextlib.AbstractAsyncContextManager[Server]:
    """The WebSocket and HTTP listener (websockets' `serve`, used as a context manager)."""
    return serve(
        built.clients.serve,
        settings.listen.host,
        settings.listen.port,
        process_request=built.routes.process_request,
        process_response=json_refusals,
        origins=_origins(settings),
        max_size=settings.http.max_frame_bytes,
        compression="deflate" if settings.http.compression else None,
        ping_interval=None,
        close_timeout=2,
        logger=redacting_logger(),
        backlog=settings.listen.listen_backlog,
    )


async def _drain(built: _Built, server: Server) -> None:
    """Move every client off within `--drain-timeout`, still listening meanwhile: /readyz
    answers 503 and /ws refuses (503), so the balancer takes the instance out."""
    window = built.settings.listen.drain_timeout
    log.info(
        "stopping: draining %d connections",
        len(built.hub.connections),
        extra={"event": "drain"},
    )
    await built.clients.drain(window * 0.8)
    with anyio.move_on_after(built.settings.redis.timeout):
        with contextlib.suppress(CacheUnavailable):
            await built.presence.leave()
    server.close(close_connections=False)
    with anyio.move_on_after(window * 0.2):
        await server.wait_closed()


async def _job(coro: Coroutine[Any, Any, None]) -> None:
    """A long job: its failure ends the instance (after its drain), as it should."""
    await coro


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped outside the loop
        return 0


def _origins(settings: Settings) -> list[Any] | None:
    allowed = settings.http.origins
    if allowed is None or (settings.auth.dev and not allowed):  # --dev: HttpRoutes checks
        return None
    return [None, *allowed]  # None: requests without an Origin header (non-browser clients)


@contextlib.asynccontextmanager
async def _metrics_listener(settings: Settings, routes: HttpRoutes) -> AsyncIterator[Server | None]:
    """/metrics on an address of its own, when `--metrics-host` is set."""
    if not settings.observability.metrics_host:
        yield None
        return

    async def never(ws: Any) -> None:  # process_metrics answers every request
        raise AssertionError("the metrics listener never upgrades")

    async with serve(
        never,
        settings.observability.metrics_host,
        settings.observability.metrics_port,
        process_request=routes.process_metrics,
        process_response=json_refusals,
        logger=redacting_logger(),
    ) as server:
        yield server


def _address(server: Server) -> tuple[str, int]:
    host, port = next(iter(s.getsockname()[:2] for s in server.sockets))
    return host, port


def _ready_line(
    settings: Settings,
    server: Server,
    metrics_server: Server | None,
    redis_url: str,
    demo: bool,
) -> str:
    host, port = _address(server)
    redis = "embedded Valkey" if not settings.redis.url else _safe_url(redis_url)
    metrics = ""
    if metrics_server is not None:
        metrics_host, metrics_port = _address(metrics_server)
        metrics = f"; metrics: http://{metrics_host}:{metrics_port}/metrics"
    page = f"; demo page: http://{host}:{port}/demo/" if demo else ""
    return (
        f"presence-gateway {settings.presence.instance_id} listening on ws://{host}:{port}/ws "
        f"(redis: {redis}; store: {describe_store(settings.store.url)}{metrics}){page}"
    )


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if "@" in rest else url

"""Faults on the wire and in the engines while a conversation runs, each checked the same way.

Two instances (ann on one, bob on the other), Redis and PostgreSQL behind a fault-injecting
proxy (`tests/faultproxy.py`) or hit by a command. Before, during and after each fault ann
sends, retrying what was not acknowledged with the same `client_msg_id`, as a client does.
Every case asserts: no crash (both instances answer afterwards); the open connections stay open;
every send is answered within the budget (acknowledged, or `unavailable`); nothing
acknowledged is lost and nothing is stored twice (history gap-free, each message once); the
caches are not served stale after the fault (unread and the list's last message agree with the
store); subscriptions and presence come back (a new message reaches bob live, ann is online);
a silently dead pub/sub connection is noticed by the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from caches import connect
from caches.redis import EmbeddedRedis, RedisClient
from gateway.client import GatewayClient, GatewayError
from loadtest.launcher import Launched
from loadtest.valkey_cluster import free_ports
from tests.faultproxy import FaultProxy
from tests.gateways import gateways, token_for

BUDGET = 1.0
SLACK = 1.5
"""What a loaded machine may add to the budget before an answer counts as late."""
FAULT_SECONDS = 1.0
RECOVERY = 20.0


@dataclass
class Chat:
    """ann's side of the conversation: sends with retries, and what was acknowledged."""

    ann: GatewayClient
    bob: GatewayClient
    room: str
    acked: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    sent: int = 0
    bus_reconnected: bool = False
    """An instance's bus reconnected during the fault (a dead connection was noticed)."""

    async def send(self, client_msg_id: str | None = None) -> None:
        """One attempt, answered within the bound: acknowledged, or kept for a retry."""
        if client_msg_id is None:
            client_msg_id = f"m{self.sent}"
            self.sent += 1
        try:
            async with asyncio.timeout(BUDGET * 2 + SLACK):  # the store's and Redis's budgets
                ack = await self.ann.request(
                    "message.send",
                    conversation_id=self.room,
                    client_msg_id=client_msg_id,
                    content=client_msg_id,
                    timeout=30,
                )
        except GatewayError as exc:
            assert exc.code in ("unavailable", "internal"), exc
            self.refusals.append(exc.code)
            if client_msg_id not in self.pending:
                self.pending.append(client_msg_id)
            return
        seq = ack["message"]["seq"]
        assert self.acked.setdefault(client_msg_id, seq) == seq, "a retry stored twice"
        if client_msg_id in self.pending:
            self.pending.remove(client_msg_id)

    async def heartbeat(self) -> None:
        """A request that needs Redis: answered within the bound, acknowledged or refused
        with a clear `unavailable` (never `internal`, never silence)."""
        try:
            async with asyncio.timeout(BUDGET * 2 + SLACK):  # its lease batch, then its own
                await self.ann.request("heartbeat", timeout=30)
        except GatewayError as exc:
            assert exc.code == "unavailable", exc

    async def settle(self) -> None:
        """Retry what is pending until every message is acknowledged."""
        deadline = asyncio.get_running_loop().time() + RECOVERY
        while self.pending:
            assert asyncio.get_running_loop().time() < deadline, f"never acked: {self.pending}"
            for client_msg_id in list(self.pending):
                await self.send(client_msg_id)
            if self.pending:
                await asyncio.sleep(0.2)


@dataclass
class Rig:
    gateways: list[Launched]
    redis: RedisClient
    """A direct client of the real Redis (not through the proxy)."""
    redis_proxy: FaultProxy
    store_proxy: FaultProxy | None


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, postgres_url: str | None = None) -> AsyncIterator[Rig]:
    (port,) = free_ports(1)
    with EmbeddedRedis(tcp_port=port):
        async with contextlib.AsyncExitStack() as stack:
            redis_proxy = stack.enter_context(FaultProxy("127.0.0.1", port))
            store_proxy = None
            store = str(tmp_path / "store.sqlite3")
            if postgres_url is not None:
                parts = urlsplit(postgres_url)
                assert parts.hostname is not None and parts.port is not None
                store_proxy = stack.enter_context(FaultProxy(parts.hostname, parts.port))
                netloc = f"{parts.username}@127.0.0.1:{store_proxy.port}"
                store = urlunsplit(parts._replace(netloc=netloc))
            direct = connect(f"redis://127.0.0.1:{port}")
            stack.push_async_callback(direct.aclose)
            with gateways(
                f"redis://127.0.0.1:{redis_proxy.port}",
                tmp_path,
                2,
                redis_timeout=str(BUDGET),
                store=store,
                lease_ttl="30",  # a fault's seconds must not end the leases
                drain_timeout="0.5",
            ) as started:
                yield Rig(started, direct, redis_proxy, store_proxy)


async def _conversation(rig: Rig) -> Chat:
    ann_id, bob_id = uuid.uuid4(), uuid.uuid4()
    ann = await GatewayClient.connect(rig.gateways[0].url, await token_for(rig.redis, ann_id))
    bob = await GatewayClient.connect(rig.gateways[1].url, await token_for(rig.redis, bob_id))
    created = await ann.request("conversation.create", kind="direct", member_ids=[str(bob_id)])
    return Chat(ann, bob, created["conversation"]["id"])


async def run_through(
    rig: Rig,
    fault: str,
    inject: Callable[[], Awaitable[object] | None],
    clear: Callable[[], Awaitable[object] | None],
) -> Chat:
    """The conversation before, during and after the fault, then every check."""
    try:
        return await _run_through(rig, inject, clear)
    except AssertionError as exc:
        raise AssertionError(f"{fault}: {exc}") from exc


async def _run_through(
    rig: Rig,
    inject: Callable[[], Awaitable[object] | None],
    clear: Callable[[], Awaitable[object] | None],
) -> Chat:
    chat = await _conversation(rig)
    for _ in range(3):
        await chat.send()
    assert not chat.pending, "the conversation works before the fault"
    reconnects = sum(g.metric("gateway_bus_reconnects_total") for g in rig.gateways)
    await _maybe(inject())
    loop = asyncio.get_running_loop()
    until = loop.time() + FAULT_SECONDS
    while loop.time() < until:
        await chat.send()
        await chat.heartbeat()
        await asyncio.sleep(0.1)
    await _maybe(clear())
    await chat.settle()
    await _checked(rig, chat)
    chat.bus_reconnected = (
        sum(g.metric("gateway_bus_reconnects_total") for g in rig.gateways) > reconnects
    )
    return chat


async def _maybe(result: Awaitable[object] | None) -> None:
    if result is not None:
        await result


async def _heartbeat_acked(client: GatewayClient) -> None:
    """A heartbeat is acknowledged within the recovery deadline, refused only `unavailable`."""
    deadline = asyncio.get_running_loop().time() + RECOVERY
    while True:
        try:
            answer = await client.request("heartbeat")
        except GatewayError as exc:
            assert exc.code == "unavailable", exc
            assert asyncio.get_running_loop().time() < deadline, "never answered again"
            await asyncio.sleep(0.2)
            continue
        assert answer["type"] == "heartbeat_ack"
        return


async def _checked(rig: Rig, chat: Chat) -> None:
    # Open connections stayed open, and both instances answer (once Redis is back for them:
    # a silently dead connection is only found by the next command's deadline, and a send
    # that skips its cache steps may not have been that command).
    for client in (chat.ann, chat.bob):
        await _heartbeat_acked(client)
    # Nothing acknowledged lost, nothing stored twice: the history is the acknowledged set.
    history = await chat.bob.request("messages.list", conversation_id=chat.room, limit=100)
    stored = [(m["client_msg_id"], m["seq"]) for m in history["messages"]]
    assert [seq for _, seq in stored] == list(range(1, len(stored) + 1)), "a gap or a twin"
    assert dict(stored) == chat.acked
    # The caches agree with the store once the fault is over (repaired if a write failed).
    last = max(chat.acked, key=chat.acked.__getitem__)

    async def fresh() -> bool:
        listed = await chat.bob.request("conversations.list")
        entry = next(c for c in listed["conversations"] if c["id"] == chat.room)
        return bool(
            entry["last_message_text"] == last and listed["total_unread"] == len(chat.acked)
        )

    await _eventually(fresh, "stale caches after the fault")
    # Subscriptions came back: a new message reaches bob live (once the instances have
    # subscribed again: what was published before that is at-most-once live, and comes from
    # history after the `resync` they send); presence is right.
    await _live_again(chat)
    ann_user = chat.ann.hello["user_id"]

    async def online() -> bool:
        query = await chat.bob.request("presence.query", user_ids=[ann_user])
        return bool(query["presence"][ann_user]["status"] == "online")

    await _eventually(online, "ann not online after the fault")


async def _live_again(chat: Chat) -> None:
    deadline = asyncio.get_running_loop().time() + RECOVERY
    for attempt in itertools.count():
        marker = f"after-{attempt}"
        await chat.send(marker)
        await chat.settle()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                while (await chat.bob.next_event("message.new"))["message"][
                    "client_msg_id"
                ] != marker:
                    pass
                return
        assert asyncio.get_running_loop().time() < deadline, "no live delivery after the fault"


async def _eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + RECOVERY
    while True:
        with contextlib.suppress(GatewayError):
            if await condition():
                return
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


# The wire to Redis (one pair of instances through every toxic in turn: each fault's checks
# pass before the next fault begins)

WIRE_TOXICS: dict[str, Callable[[FaultProxy], None]] = {
    "latency-300ms": lambda proxy: proxy.latency(0.3),
    "bandwidth-4kB/s": lambda proxy: proxy.bandwidth(4000),
    "slice-3B": lambda proxy: proxy.slice(3, 0.001),
    "blackhole": FaultProxy.blackhole,
    "reset": FaultProxy.reset,
}


async def test_redis_wire_faults(tmp_path: Path) -> None:
    async with rig(tmp_path) as setup:
        proxy = setup.redis_proxy
        for name, toxic in WIRE_TOXICS.items():
            inject = functools.partial(toxic, proxy)
            chat = await run_through(setup, name, inject, proxy.clear)
            if name == "blackhole":
                # A silent pub/sub connection is noticed by the probe, not by a socket error.
                assert chat.bus_reconnected, name


# Redis itself


async def test_redis_command_faults(tmp_path: Path) -> None:
    async with rig(tmp_path) as setup:
        direct = setup.redis
        pause_ms = str(int(FAULT_SECONDS * 1000))
        await run_through(
            setup,
            "CLIENT KILL TYPE pubsub",
            lambda: direct.execute_command("CLIENT", "KILL", "TYPE", "pubsub"),
            lambda: None,
        )
        await run_through(
            setup,
            "CLIENT PAUSE",
            lambda: direct.execute_command("CLIENT", "PAUSE", pause_ms),
            lambda: None,
        )
        await run_through(
            setup,
            "maxmemory reached (OOM)",
            lambda: direct.config_set("maxmemory", "1"),
            lambda: direct.config_set("maxmemory", "0"),
        )
        await run_through(setup, "FLUSHALL (everything lost)", direct.flushall, lambda: None)
        with contextlib.ExitStack() as stack:
            # Last: turning into a replica of an empty server also empties this one.
            (port,) = free_ports(1)
            stack.enter_context(EmbeddedRedis(tcp_port=port))
            await run_through(
                setup,
                "READONLY (a replica now)",
                lambda: direct.execute_command("REPLICAOF", "127.0.0.1", str(port)),
                lambda: direct.execute_command("REPLICAOF", "NO", "ONE"),
            )


# The wire to PostgreSQL


async def test_postgres_wire_faults(tmp_path: Path, postgres_url: str) -> None:
    async with rig(tmp_path, postgres_url) as setup:
        proxy = setup.store_proxy
        assert proxy is not None
        for name in ("latency-300ms", "blackhole", "reset"):
            inject = functools.partial(WIRE_TOXICS[name], proxy)
            await run_through(setup, f"PostgreSQL {name}", inject, proxy.clear)

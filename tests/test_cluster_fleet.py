"""A fleet that shares nothing but its engines: two gateway instances in separate working
directories, bound to different loopback addresses (127.0.0.2, 127.0.0.3), sharing only a
PostgreSQL server and a 3+3 Redis Cluster. Then a primary killed mid-conversation, a drain and
a resharding under traffic."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

from redis.crc import key_slot

from caches import keys
from caches.redis import RedisClient, connect
from gateway.client import GatewayClient, GatewayError
from gateway.sdk import Client
from loadtest.valkey_cluster import ValkeyCluster
from tests.gateways import client_for, start_gateway, token_for


async def _group(clients: list[GatewayClient], users: list[uuid.UUID]) -> str:
    ack = await clients[0].request(
        "conversation.create", kind="group", member_ids=[str(u) for u in users[1:]]
    )
    for client in clients[1:]:
        await client.next_event("conversation.added", timeout=10)
    return str(ack["conversation"]["id"])


async def _messages(client: GatewayClient, count: int) -> list[dict[str, object]]:
    return [(await client.next_event("message.new", timeout=15))["message"] for _ in range(count)]


async def test_two_hosts_share_only_postgres_and_the_cluster(
    cluster: ValkeyCluster, postgres_url: str, tmp_path: Path
) -> None:
    redis = connect(cluster.url)
    hosts = []
    try:
        for n, address in enumerate(("127.0.0.2", "127.0.0.3")):
            workdir = tmp_path / f"host{n + 1}"
            workdir.mkdir()
            name = f"host{n + 1}"
            gateway = start_gateway(cluster.url, workdir, name, store=postgres_url, host=address)
            hosts.append(gateway)
        assert hosts[0].url.startswith("ws://127.0.0.2:") and hosts[1].url.startswith(
            "ws://127.0.0.3:"
        )
        users = [uuid.uuid4() for _ in range(4)]
        clients = [await client_for(redis, hosts[n % 2], u) for n, u in enumerate(users)]
        ann, bob = clients[0], clients[1]
        await ann.request("presence.subscribe", user_ids=[str(users[3])])
        conversation = await _group(clients, users)

        # Typing crosses hosts.
        await bob.send("typing.start", conversation_id=conversation)
        assert (await ann.next_event("typing", timeout=10))["user_id"] == str(users[1])

        # Concurrent senders on both hosts: one gap-free order, the same everywhere.
        async def burst(client: GatewayClient, n: int) -> None:
            for i in range(8):
                await client.request(
                    "message.send", conversation_id=conversation, client_msg_id=f"{n}-{i}",
                    content=f"{n}.{i}",
                )  # fmt: skip

        await asyncio.gather(*(burst(c, n) for n, c in enumerate(clients)))
        orders = [[m["id"] for m in await _messages(c, 32)] for c in clients]
        assert all(order == orders[0] for order in orders)
        page = await ann.request("messages.list", conversation_id=conversation, limit=100)
        assert [m["seq"] for m in page["messages"]] == list(range(1, 33))
        assert [m["id"] for m in page["messages"]] == orders[0]

        # Unread counts from the store, and recovery with after_seq.
        # (a sender has read everything up to its own last message)
        own = max(m["seq"] for m in page["messages"] if m["sender_id"] == str(users[3]))
        unread = await clients[3].request("conversation.unread", conversation_id=conversation)
        assert unread["unread_count"] == 32 - own
        recovered = await bob.request(
            "messages.list", conversation_id=conversation, after_seq=30, limit=10
        )
        assert [m["seq"] for m in recovered["messages"]] == [31, 32]

        # Presence across hosts: the last user leaves and goes offline for the watcher.
        await clients[3].close()
        while (event := await ann.next_event("presence", timeout=10))["status"] != "offline":
            pass
        assert event["user_id"] == str(users[3])
        for client in clients[:3]:
            await client.close()
    finally:
        for host in hosts:
            host.stop()
        await redis.aclose()


async def test_a_primary_killed_mid_conversation(postgres_url: str, tmp_path: Path) -> None:
    """Sends stay acknowledged from the store; clients get resync; nothing acknowledged is
    lost; live delivery comes back."""
    with ValkeyCluster() as cluster:
        redis: RedisClient = connect(cluster.url)
        hosts = [start_gateway(cluster.url, tmp_path, f"gw{n}", store=postgres_url) for n in (1, 2)]
        try:
            users = [uuid.uuid4(), uuid.uuid4()]
            ann = await client_for(redis, hosts[0], users[0])
            bob = await GatewayClient.connect(hosts[1].url, await token_for(redis, users[1]))
            conversation = await _group([ann, bob], users)
            acked = []
            for i in range(5):
                ack = await bob.request(
                    "message.send", conversation_id=conversation, client_msg_id=f"a{i}",
                    content=f"before {i}",
                )  # fmt: skip
                acked.append(ack["message"]["seq"])
            await _messages(ann, 5)
            # The primary that owns the conversation's channel: its clients must resync.
            owner = redis.get_node_from_key(  # type: ignore[union-attr]
                keys.conversation_channel(uuid.UUID(conversation))
            )
            assert owner is not None
            cluster.kill(int(owner.port))
            for i in range(20):  # through the failover: every send answered, none lost
                try:
                    ack = await bob.request(
                        "message.send", conversation_id=conversation, client_msg_id=f"b{i}",
                        content=f"during {i}", timeout=10,
                    )  # fmt: skip
                    acked.append(ack["message"]["seq"])
                except GatewayError as exc:
                    assert exc.code == "unavailable"
                await asyncio.sleep(0.1)
            cluster.wait_healthy()
            assert (await ann.next_event("resync", timeout=15))["reason"]
            await bob.request(
                "message.send", conversation_id=conversation, client_msg_id="c0", content="after"
            )
            live = await ann.next_event("message.new", timeout=15)
            while live["message"]["content"] != "after":  # live delivery is back
                live = await ann.next_event("message.new", timeout=15)
            page = await ann.request(
                "messages.list", conversation_id=conversation, after_seq=0, limit=100
            )
            stored = [m["seq"] for m in page["messages"]]
            assert set(acked) <= set(stored)
            assert stored == list(range(1, len(stored) + 1))
            assert ann.ws.close_code is None and bob.ws.close_code is None
            await ann.close()
            await bob.close()
        finally:
            for host in hosts:
                host.stop()
            await redis.aclose()


async def test_a_drain_and_a_resharding_under_traffic(postgres_url: str, tmp_path: Path) -> None:
    """One instance drained while messages flow (its clients move to the other and miss
    nothing), then the slot of the conversation's channel moved to another primary under
    traffic: live delivery moves with it, nothing acknowledged is lost."""
    with ValkeyCluster() as cluster:
        redis: RedisClient = connect(cluster.url)
        hosts = [start_gateway(cluster.url, tmp_path, f"gw{n}", store=postgres_url) for n in (1, 2)]
        reader = sender = None
        try:
            users = [uuid.uuid4(), uuid.uuid4()]
            tokens = [await token_for(redis, u) for u in users]
            reader = Client(urls=[hosts[0].url, hosts[1].url], token=tokens[0])
            sender = Client(urls=[hosts[1].url], token=tokens[1])
            await reader.connect()
            await sender.connect()
            assert sender.user_id is not None
            conversation = (await reader.create_conversation([sender.user_id]))["conversation"]
            seen: list[int] = []
            reader.on("message", lambda m: seen.append(m["seq"]))
            for i in range(30):
                await sender.send(conversation["id"], f"m{i}").sent
                if i == 5:
                    hosts[0].proc.send_signal(signal.SIGTERM)  # the reader's instance drains
                if i == 15:
                    channel = keys.conversation_channel(uuid.UUID(conversation["id"]))
                    slot = key_slot(channel.encode())
                    node = redis.get_node_from_key(channel)  # type: ignore[union-attr]
                    assert node is not None
                    source = int(node.port)
                    target = next(p for p in cluster.primary_ports() if p != source)
                    cluster.move_slot(slot, source, target)
            async with asyncio.timeout(20):
                while len(seen) < 30:
                    await asyncio.sleep(0.05)
            assert seen == list(range(1, 31))  # in order, none twice, none missing
            assert reader.hello is not None and reader.hello["instance_id"].startswith("gw2")
        finally:
            for client in (reader, sender):
                if client is not None:
                    await client.close()
            for host in hosts:
                host.stop()
            await redis.aclose()

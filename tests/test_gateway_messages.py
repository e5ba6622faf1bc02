"""Messaging through two real gateway instances: persisted first, seq without gaps, idempotent
retries, fan-out to every member's connections, receipts as watermarks; every test on the
SQLite store and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from caches import EmbeddedRedis, MessageCache, connect
from caches.redis import RedisClient
from gateway.client import GatewayClient
from loadtest.valkey_cluster import free_ports
from tests.faultproxy import FaultProxy
from tests.gateways import GatewayProcess, client_for, gateways, start_gateway
from tests.test_protocol import BAD_MESSAGING_FRAMES


@dataclass(frozen=True)
class Pair:
    """Two instances, a user on each, and their direct conversation."""

    gw1: GatewayProcess
    gw2: GatewayProcess
    a: GatewayClient
    b: GatewayClient
    room: str


@pytest.fixture(params=["sqlite", "postgresql"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """The same messaging behaviour on both stores: the default SQLite file, or a fresh
    database on a real PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"store": str(request.getfixturevalue("postgres_url"))}


@pytest.fixture
async def pair(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> AsyncIterator[Pair]:
    with gateways(redis_url, tmp_path, 2, **store_settings) as (gw1, gw2):
        a = await client_for(redis, gw1)
        b = await client_for(redis, gw2)
        room = await _direct(a, uuid.UUID(b.hello["user_id"]))
        yield Pair(gw1, gw2, a, b, room)
        for client in (a, b):
            await client.close()


async def _direct(a: GatewayClient, other: uuid.UUID) -> str:
    created = await a.request("conversation.create", kind="direct", member_ids=[str(other)])
    return str(created["conversation"]["id"])


async def test_send_persists_acks_and_reaches_every_members_connection(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, **store_settings) as (gw1, gw2):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        a_tab = await client_for(redis, gw2, ann)
        b = await client_for(redis, gw2, bob)
        room = await _direct(a, bob)
        for client in (a_tab, b):
            await client.next_event("conversation.added")
        ack = await a.request(
            "message.send", conversation_id=room, client_msg_id="c-1", content="hello"
        )
        message = ack["message"]
        assert ack["created"] is True and message["seq"] == 1
        assert message["sender_id"] == str(ann) and message["content_type"] == "text"
        for client in (b, a_tab):  # the sender's other tab too
            assert (await client.next_event("message.new"))["message"] == message
        # Written through to the message cache.
        cached = await MessageCache(redis).get_message(message["id"])
        assert cached is not None and cached.seq == 1 and cached.content == "hello"
        # A retry returns the same message and publishes nothing new.
        retry = await a.request(
            "message.send", conversation_id=room, client_msg_id="c-1", content="hello"
        )
        assert retry["created"] is False and retry["message"] == message
        second = await b.request(
            "message.send", conversation_id=room, client_msg_id="c-1", content="yes"
        )
        assert second["message"]["seq"] == 2  # another sender's c-1 is another message
        assert (await a_tab.next_event("message.new"))["message"]["seq"] == 2
        for client in (a, a_tab, b):
            await client.close()


async def test_a_storm_of_senders_on_both_instances_gives_one_gap_free_order_everywhere(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    """Eight members, four on each instance, all sending at once: seqs have no gap and no
    duplicate, and every member's connection sees every message once, in seq order."""
    with gateways(redis_url, tmp_path, 2, **store_settings) as (gw1, gw2):
        users = [uuid.uuid4() for _ in range(8)]
        clients = [await client_for(redis, (gw1, gw2)[n % 2], u) for n, u in enumerate(users)]
        created = await clients[0].request(
            "conversation.create", kind="group", member_ids=[str(u) for u in users[1:]], name="g"
        )
        room = created["conversation"]["id"]
        for client in clients[1:]:
            await client.next_event("conversation.added")
        per_sender = 25

        async def burst(client: GatewayClient, tag: str) -> list[int]:
            acks = await asyncio.gather(
                *(
                    client.request(
                        "message.send", conversation_id=room, client_msg_id=f"{tag}{n}",
                        content=f"{tag} {n}",
                    )
                    for n in range(per_sender)
                )
            )  # fmt: skip
            return [ack["message"]["seq"] for ack in acks]

        seqs = await asyncio.gather(*(burst(c, f"s{n}-") for n, c in enumerate(clients)))
        total = per_sender * len(clients)
        assert sorted(seq for sent in seqs for seq in sent) == list(range(1, total + 1))

        async def seen(client: GatewayClient) -> list[int]:
            return [
                (await client.next_event("message.new"))["message"]["seq"] for _ in range(total)
            ]

        for order in await asyncio.gather(*(seen(c) for c in clients)):
            assert order == list(range(1, total + 1))  # every one, none twice, in seq order
        for client in clients:
            assert client.events.empty()
            await client.close()


async def test_a_connection_s_sends_in_flight_together_keep_their_order(pair: Pair) -> None:
    """A client sending without waiting (an outbox flushed on reconnect): its sends run
    together, yet take seqs in the order they were sent, each answer comes in request order,
    a frame of another kind is answered after the sends before it, and a bad send among them
    is refused alone."""
    a, b, room = pair.a, pair.b, pair.room
    await b.next_event("conversation.added")
    count = 50  # with the list and the create, within a connection's burst of 60 frames
    for n in range(count):
        content = "" if n == 17 else f"number {n}"  # blank: refused, the rest go on
        await a.send("message.send", id=f"s{n}", conversation_id=room,
                     client_msg_id=f"k{n}", content=content)  # fmt: skip
    await a.send("messages.list", id="list", conversation_id=room, limit=100)
    answers: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while len(answers) < count + 1:
            frame = await a.events.get()
            if frame["type"] in ("ack", "error"):
                answers.append(frame)
    assert [f["id"] for f in answers] == [f"s{n}" for n in range(count)] + ["list"]
    assert answers[17]["type"] == "error" and answers[17]["code"] == "invalid_field"
    sent = [f["message"] for f in answers[:count] if f["type"] == "ack"]
    assert [m["client_msg_id"] for m in sent] == [f"k{n}" for n in range(count) if n != 17]
    assert [m["seq"] for m in sent] == list(range(1, count))
    listed = answers[-1]["messages"]
    assert [m["client_msg_id"] for m in listed] == [m["client_msg_id"] for m in sent]
    seen = [(await b.next_event("message.new"))["message"]["seq"] for _ in range(count - 1)]
    assert seen == list(range(1, count))


async def test_receipts_move_watermarks_forward_only_and_tell_the_conversation(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, **store_settings) as (gw1, gw2):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        b = await client_for(redis, gw2, bob)
        b_phone = await client_for(redis, gw1, bob)
        room = await _direct(a, bob)
        sent = [
            (
                await a.request(
                    "message.send", conversation_id=room, client_msg_id=f"m{n}", content=f"{n}"
                )
            )["message"]
            for n in range(3)
        ]
        delivered = await b.request(
            "message.delivered", conversation_id=room, message_id=sent[1]["id"]
        )
        assert (delivered["delivered_seq"], delivered["read_seq"]) == (2, 0)
        status = await a.next_event("message.status")
        assert (status["user_id"], status["seq"], status["status"]) == (str(bob), 2, "delivered")
        read = await b.request("message.read", conversation_id=room, message_id=sent[2]["id"])
        assert (read["delivered_seq"], read["read_seq"]) == (3, 3)
        for client in (a, b_phone):  # the sender, and the reader's other device
            event = await client.next_event("message.read")
            assert (event["user_id"], event["seq"]) == (str(bob), 3)
        older = await b.request("message.read", conversation_id=room, message_id=sent[0]["id"])
        assert older["read_seq"] == 3  # never backwards
        # Nothing was announced for it: the next receipt event is for the next real move.
        await a.request("message.send", conversation_id=room, client_msg_id="m3", content="3")
        news = [(await b.next_event("message.new"))["message"] for _ in range(4)]
        assert [m["seq"] for m in news] == [1, 2, 3, 4]
        await b.request("message.read", conversation_id=room, message_id=news[-1]["id"])
        assert (await a.next_event("message.read"))["seq"] == 4
        cached = await MessageCache(redis).get_message(sent[2]["id"])
        assert cached is not None and cached.status == "read"
        for client in (a, b, b_phone):
            await client.close()


async def test_a_non_member_is_refused_every_conversation_frame(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, **store_settings) as (gw,):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw, ann)
        eve = await client_for(redis, gw)
        room = await _direct(a, bob)
        sent = await a.request("message.send", conversation_id=room, client_msg_id="x", content="x")
        for frame, fields in (
            ("message.send", {"client_msg_id": "e", "content": "hi"}),
            ("message.read", {"message_id": sent["message"]["id"]}),
            ("message.delivered", {"message_id": sent["message"]["id"]}),
            ("messages.list", {}),
            ("conversation.unread", {}),
            ("conversation.pin", {"value": True}),
            ("conversation.mute", {"value": True}),
            ("typing.start", {}),
        ):
            await eve.send(frame, id="e1", conversation_id=room, **fields)
            error = await eve.next_event("error")
            assert (error["code"], error["id"]) == ("forbidden", "e1"), frame
        # A delete names no conversation of eve's: as if the message did not exist.
        await eve.send(
            "message.delete", id="e2", conversation_id=room, message_id=sent["message"]["id"]
        )
        error = await eve.next_event("error")
        assert (error["code"], error["id"]) == ("not_found", "e2")
        history = await a.request("messages.list", conversation_id=room)
        assert [m["content"] for m in history["messages"]] == ["x"]  # nothing changed
        for client in (a, eve):
            await client.close()


async def test_history_pages_by_seq_and_repeated_reads_come_from_the_cache(pair: Pair) -> None:
    a, b, room = pair.a, pair.b, pair.room
    for n in range(5):
        await a.request("message.send", conversation_id=room, client_msg_id=f"m{n}", content=f"{n}")
    newest = await b.request("messages.list", conversation_id=room, limit=3)
    assert [m["seq"] for m in newest["messages"]] == [3, 4, 5] and newest["has_more"] is True
    stores = pair.gw2.metric(
        'gateway_cache_requests_total{cache="messages",op="history",result="miss"}'
    )
    for _ in range(5):
        again = await b.request("messages.list", conversation_id=room, limit=3)
        assert again == {**newest, "id": again["id"]}
    assert (
        pair.gw2.metric(
            "gateway_cache_requests_total", cache="messages", op="history", result="hit"
        )
        >= 5
    )
    assert (
        pair.gw2.metric(
            "gateway_cache_requests_total", cache="messages", op="history", result="miss"
        )
        == stores
    )
    older = await b.request("messages.list", conversation_id=room, limit=3, before_seq=3)
    assert [m["seq"] for m in older["messages"]] == [1, 2] and older["has_more"] is False
    after = await b.request("messages.list", conversation_id=room, after_seq=2, limit=2)
    assert [m["seq"] for m in after["messages"]] == [3, 4] and after["has_more"] is True


async def test_a_client_that_was_away_recovers_everything_in_order_once(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, **store_settings) as (gw1, gw2):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        b = await client_for(redis, gw2, bob)
        room = await _direct(a, bob)
        await a.request("message.send", conversation_id=room, client_msg_id="m0", content="0")
        last_seen = (await b.next_event("message.new"))["message"]["seq"]
        await b.close()  # offline while the conversation goes on
        for n in range(1, 8):
            await a.request(
                "message.send", conversation_id=room, client_msg_id=f"m{n}", content=f"{n}"
            )
        b = await client_for(redis, gw2, bob)
        recovered: list[int] = []
        more = True
        while more:  # page forward from the last seq seen, as docs/protocol.md says
            page = await b.request(
                "messages.list", conversation_id=room, after_seq=last_seen, limit=3
            )
            recovered += [m["seq"] for m in page["messages"]]
            last_seen = recovered[-1] if recovered else last_seen
            more = page["has_more"]
        assert recovered == list(range(2, 9))
        for client in (a, b):
            await client.close()


async def test_conversation_list_with_unread_counts_cached_and_flags(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, **store_settings) as (gw1, gw2):
        ann, bob, cat = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        b = await client_for(redis, gw2, bob)
        with_bob = await _direct(a, bob)
        with_cat = await _direct(a, cat)
        for n in range(3):
            await b.request(
                "message.send", conversation_id=with_bob, client_msg_id=f"b{n}", content=f"b{n}"
            )
        await a.request(
            "message.send", conversation_id=with_cat, client_msg_id="a0", content="hi cat"
        )
        first = await a.request("conversations.list")  # a miss: from the store, then cached
        assert [c["id"] for c in first["conversations"]] == [with_cat, with_bob]  # newest first
        unread = {c["id"]: c["unread_count"] for c in first["conversations"]}
        assert unread == {with_bob: 3, with_cat: 0} and first["total_unread"] == 3
        assert first["conversations"][0]["last_message_text"] == "hi cat"
        # Later sends and reads keep the cached list exact (written through).
        await b.request("message.send", conversation_id=with_bob, client_msg_id="b3", content="b3")
        second = await a.request("conversations.list")
        assert [c["id"] for c in second["conversations"]] == [with_bob, with_cat]
        assert second["total_unread"] == 4
        last = (await a.request("messages.list", conversation_id=with_bob, limit=1))["messages"][0]
        await a.request("message.read", conversation_id=with_bob, message_id=last["id"])
        assert (await a.request("conversations.list"))["total_unread"] == 0
        # Pin and mute, per member.
        pinned = await a.request("conversation.pin", conversation_id=with_cat, value=True)
        assert pinned["value"] is True
        await a.request("conversation.mute", conversation_id=with_bob, value=True)
        third = await a.request("conversations.list")
        assert [c["id"] for c in third["conversations"]] == [with_cat, with_bob]
        flags = {c["id"]: (c["is_pinned"], c["is_muted"]) for c in third["conversations"]}
        assert flags == {with_cat: (True, False), with_bob: (False, True)}
        assert [
            c["is_pinned"] for c in (await b.request("conversations.list"))["conversations"]
        ] == [False]
        with_other = await _direct(b, cat)
        await a.send("conversation.pin", id="p", conversation_id=with_other, value=True)
        assert (await a.next_event("error"))["code"] == "forbidden"
        for client in (a, b):
            await client.close()


async def test_a_sender_deletes_a_message_everywhere(pair: Pair, redis: RedisClient) -> None:
    a, b, room = pair.a, pair.b, pair.room
    sent = []
    for n in range(3):
        ack = await a.request(
            "message.send", conversation_id=room, client_msg_id=f"m{n}", content=f"{n}"
        )
        sent.append(ack["message"])
    assert len((await b.request("messages.list", conversation_id=room))["messages"]) == 3
    await b.send("message.delete", id="d0", conversation_id=room, message_id=sent[1]["id"])
    refused = await b.next_event("error")
    assert (refused["id"], refused["code"]) == ("d0", "forbidden")  # not the sender
    deleted = await a.request("message.delete", conversation_id=room, message_id=sent[1]["id"])
    assert deleted["seq"] == 2
    told = await b.next_event("message.deleted")
    assert (told["message_id"], told["seq"]) == (sent[1]["id"], 2)
    history = await b.request("messages.list", conversation_id=room)
    assert [m["seq"] for m in history["messages"]] == [1, 3]  # from the store: caches dropped
    assert await MessageCache(redis).get_message(sent[1]["id"]) is None
    await a.send("message.delete", id="d1", conversation_id=room, message_id=sent[1]["id"])
    assert (await a.next_event("error"))["code"] == "not_found"


async def test_unread_counts_exact_after_a_storm_of_sends_and_reads(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    """Reads up to a seq in the middle of a storm of sends leave exactly the rest unread,
    in the cached list and in the store, whatever order the writes landed in."""
    with gateways(redis_url, tmp_path, 2, **store_settings) as (gw1, gw2):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        b = await client_for(redis, gw2, bob)
        room = await _direct(a, bob)
        await b.request("conversations.list")  # bob's list is cached from here on
        unread = await b.request("conversation.unread", conversation_id=room)
        assert unread["unread_count"] == 0  # bob's counter is cached from here on
        total = 30

        async def sends() -> list[dict[str, object]]:
            acks = await asyncio.gather(
                *(
                    a.request(
                        "message.send", conversation_id=room, client_msg_id=f"s{n}", content=f"{n}"
                    )
                    for n in range(total)
                )
            )
            return [ack["message"] for ack in acks]

        async def reads() -> int:
            read_to = 0
            for _ in range(10):
                event = await b.next_event("message.new")
                ack = await b.request(
                    "message.read", conversation_id=room, message_id=event["message"]["id"]
                )
                read_to = max(read_to, int(ack["read_seq"]))
            return read_to

        _, read_to = await asyncio.gather(sends(), reads())
        cached = await b.request("conversations.list")
        assert cached["total_unread"] == total - read_to
        assert cached["conversations"][0]["unread_count"] == total - read_to
        from caches import ConversationCache

        await ConversationCache(redis).delete_user_conversations(bob)  # next list: the store
        assert (await b.request("conversations.list"))["total_unread"] == total - read_to
        counted = await b.request("conversation.unread", conversation_id=room)
        assert counted["unread_count"] == total - read_to
        for client in (a, b):
            await client.close()


async def test_unread_count_is_cached_exact_and_rebuilt_after_redis_loses_it(
    pair: Pair, redis: RedisClient
) -> None:
    a, b, room = pair.a, pair.b, pair.room

    async def send(n: int) -> dict[str, object]:
        ack = await a.request(
            "message.send", conversation_id=room, client_msg_id=f"u{n}", content=f"{n}"
        )
        return dict(ack["message"])

    async def count() -> int:
        answer = await b.request("conversation.unread", conversation_id=room)
        assert answer["conversation_id"] == room
        return int(answer["unread_count"])

    for n in range(3):
        await send(n)
    assert await count() == 3  # from the store, which fills the counter
    stores = pair.gw2.metric(
        'gateway_cache_requests_total{cache="unread",op="count",result="miss"}'
    )
    last = await send(3)
    assert await count() == 4  # the counter counted the send
    assert (
        pair.gw2.metric("gateway_cache_requests_total", cache="unread", op="count", result="hit")
        >= 1
    )
    assert (
        pair.gw2.metric("gateway_cache_requests_total", cache="unread", op="count", result="miss")
        == stores
    )
    own = await a.request("conversation.unread", conversation_id=room)
    assert own["unread_count"] == 0  # the sender's own messages are read
    await b.request("message.read", conversation_id=room, message_id=last["id"])
    assert await count() == 0
    await send(4)
    await send(5)
    await redis.flushdb()  # Redis loses everything: rebuilt from the store, never 0
    assert await count() == 2
    assert await count() == 2


async def test_every_malformed_messaging_frame_is_answered_through_a_real_socket(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    """Each answered `invalid_field` naming the field, with the frame's id; the connection
    stays open and usable."""
    with gateways(redis_url, tmp_path, 1, **store_settings) as (gw,):
        client = await client_for(redis, gw)
        for n, (raw, field) in enumerate(BAD_MESSAGING_FRAMES):
            await client.send_raw(f'{{"id":"bad-{n}",' + raw[1:])
            error = await client.next_event("error")
            assert (error["code"], error["id"]) == ("invalid_field", f"bad-{n}")
            assert error["message"].startswith(f"{field}:")
        assert "conversations" in await client.request("conversations.list")
        await client.close()


async def test_a_new_conversation_appears_in_a_members_cached_list_at_once(pair: Pair) -> None:
    a, b, first = pair.a, pair.b, pair.room
    listed = await b.request("conversations.list")  # b's list is cached from here on
    assert [c["id"] for c in listed["conversations"]] == [first]
    members = [b.hello["user_id"], str(uuid.uuid4())]
    created = await a.request("conversation.create", kind="group", member_ids=members, name="g")
    second = created["conversation"]["id"]
    listed = await b.request("conversations.list")
    assert {c["id"] for c in listed["conversations"]} == {first, second}


async def test_an_idempotency_key_means_one_message_in_one_conversation(
    redis: RedisClient, redis_url: str, store_settings: dict[str, str], tmp_path: Path
) -> None:
    """Reused with another conversation or other content, a key is refused `conflict` naming
    it; a non-member is refused before the key is looked up; a deleted message's key answers
    the deletion, never a new message."""
    with gateways(redis_url, tmp_path, 1, **store_settings) as (gw,):
        ann, bob, cat = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw, ann)
        c = await client_for(redis, gw, cat)
        c1 = await _direct(a, bob)
        c2 = await _direct(a, cat)
        first = await a.request(
            "message.send", conversation_id=c1, client_msg_id="reuse-1", content="hi"
        )
        for room, content in ((c2, "hi"), (c1, "other words")):
            await a.send(
                "message.send", id="x", conversation_id=room, client_msg_id="reuse-1",
                content=content,
            )  # fmt: skip
            refused = await a.next_event("error")
            assert (refused["id"], refused["code"]) == ("x", "conflict")
            assert "reuse-1" in refused["message"]
        assert (await a.request("messages.list", conversation_id=c2))["messages"] == []
        # Cat is no member of c1: forbidden, whatever key Ann used there.
        await c.send("message.send", id="y", conversation_id=c1, client_msg_id="reuse-1",
                     content="hi")  # fmt: skip
        assert (await c.next_event("error"))["code"] == "forbidden"
        await a.request("message.delete", conversation_id=c1, message_id=first["message"]["id"])
        again = await a.request(
            "message.send", conversation_id=c1, client_msg_id="reuse-1", content="hi"
        )
        assert (again["created"], again["deleted"]) == (False, True)
        assert again["message"]["id"] == first["message"]["id"]
        assert (await a.request("messages.list", conversation_id=c1))["messages"] == []
        for client in (a, c):
            await client.close()


async def test_a_message_sent_the_moment_a_conversation_exists_reaches_a_member_elsewhere(
    tmp_path: Path,
) -> None:
    """The other member's instance learns of the conversation from the bus and must subscribe
    to it; its Redis is 60 ms away, the creator's next to it, so the first message is published
    before that subscription exists. It still arrives, live, after `conversation.added`: once
    subscribed, the instance reads what was committed meanwhile."""
    (port,) = free_ports(1)
    with (
        EmbeddedRedis(tcp_port=port),
        FaultProxy("127.0.0.1", port) as far,
        gateways(f"redis://127.0.0.1:{port}", tmp_path) as (near,),
    ):
        remote = start_gateway(f"redis://127.0.0.1:{far.port}", tmp_path, "far")
        redis = connect(f"redis://127.0.0.1:{port}")
        try:
            a = await client_for(redis, near)
            b = await client_for(redis, remote)
            far.latency(0.03)  # each way: the subscription lands ~60 ms after the join is sent
            created = await a.request(
                "conversation.create", kind="direct", member_ids=[b.hello["user_id"]]
            )
            room = str(created["conversation"]["id"])
            await a.request(
                "message.send", conversation_id=room, content="first", client_msg_id="c1"
            )
            added = await b.next_event("conversation.added", timeout=5)
            assert added["conversation"]["id"] == room
            first = await b.next_event("message.new", timeout=5)
            assert (first["message"]["seq"], first["message"]["content"]) == (1, "first")
            for client in (a, b):
                await client.close()
        finally:
            remote.stop()
            await redis.aclose()

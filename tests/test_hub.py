"""Routing on the in-memory bus, no sockets: two hubs on one broker behave like two instances."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from caches import keys
from caches.models import Revocation
from gateway.bus import MemoryBroker, MemoryBus
from gateway.protocol import Close, envelope, events
from gateway.realtime import Hub
from gateway.realtime.hub import Recover
from tests.conftest import until, wait_for
from tests.fakes import RecordingConnection, client_state


async def _no_reassert(channels: frozenset[bytes] | None) -> None:
    raise AssertionError("the in-memory bus never reconnects")


@contextlib.asynccontextmanager
async def instances(count: int) -> AsyncIterator[tuple[MemoryBroker, list[Hub], list[MemoryBus]]]:
    broker = MemoryBroker()
    buses = [MemoryBus(broker) for _ in range(count)]
    hubs = [Hub(bus, 1.0) for bus in buses]
    runners = [
        asyncio.create_task(b.run(h.deliver, _no_reassert))
        for b, h in zip(buses, hubs, strict=True)
    ]
    try:
        while not all(bus.connected for bus in buses):
            await asyncio.sleep(0)
        yield broker, hubs, buses
    finally:
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)


def connect(
    hub: Hub, user: uuid.UUID, *conversations: uuid.UUID, **ids: str
) -> RecordingConnection:
    conn = RecordingConnection(client_state(user, **ids))
    hub.add(conn)
    hub.set_memberships(user, dict.fromkeys(conversations, 0))
    return conn


async def test_typing_reaches_members_on_every_instance_but_not_the_typist() -> None:
    async with instances(2) as (broker, (hub1, hub2), _):
        ann, bob, eve = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        room = uuid.uuid4()
        ann1, ann2 = connect(hub1, ann, room), connect(hub2, ann, room)
        bob2 = connect(hub2, bob, room)
        eve1 = connect(hub1, eve)  # not a member
        frame = events.typing(room, ann, started=True, expires_in_ms=10_000)
        broker.publish(keys.conversation_channel(room), envelope.pack(frame, exclude=ann))

        async def delivered() -> bool:
            return bool(bob2.writes)

        await wait_for(delivered)
        assert bob2.received == [
            {
                "type": "typing",
                "conversation_id": str(room),
                "user_id": str(ann),
                "state": "start",
                "expires_in_ms": 10_000,
            }
        ]
        assert ann1.writes == ann2.writes == eve1.writes == []


async def test_one_write_per_connection_per_batch() -> None:
    async with instances(1) as (broker, (hub,), _):
        rooms = [uuid.uuid4() for _ in range(3)]
        ann = connect(hub, uuid.uuid4(), *rooms)
        for index, room in enumerate(rooms):  # one loop iteration: one batch
            frame = events.encode({"type": "n", "index": index})
            broker.publish(keys.conversation_channel(room), envelope.pack(frame))

        async def delivered() -> bool:
            return bool(ann.writes)

        await wait_for(delivered)
        assert len(ann.writes) == 1
        assert [f["index"] for f in ann.received] == [0, 1, 2]
        assert hub.delivered == 3


async def test_membership_control_joins_every_instance_before_its_frame() -> None:
    async with instances(2) as (broker, (hub1, hub2), (bus1, bus2)):
        ann = uuid.uuid4()
        room = uuid.uuid4()
        ann1, ann2 = connect(hub1, ann), connect(hub2, ann)
        added = events.conversation_added({"id": str(room)})
        broker.publish(keys.user_channel(ann), envelope.pack(added, join=room))

        async def joined() -> bool:
            return hub1.is_member(ann, room) and hub2.is_member(ann, room)

        await wait_for(joined)
        assert bus1.subscribed(keys.conversation_channel(room))
        assert bus2.subscribed(keys.conversation_channel(room))
        await until(lambda: bool(ann1.received and ann2.received))
        for conn in (ann1, ann2):
            assert conn.received == [
                {"type": "conversation.added", "conversation": {"id": str(room)}}
            ]
        # A control message with no frame changes membership and sends nothing: the next frame
        # the user gets is the new conversation's first message.
        other = uuid.uuid4()
        broker.publish(keys.user_channel(ann), envelope.pack(b"", join=other))
        await until(lambda: hub1.is_member(ann, other))
        broker.publish(keys.conversation_channel(other), envelope.pack(_new(1), seq=1))
        await until(lambda: len(ann1.received) >= 2)
        assert ann1.received[1:] == [{"type": "message.new", "seq": 1}]


async def test_revocation_closes_exactly_the_sessions_and_tokens_connections() -> None:
    async with instances(1) as (broker, (hub,), _):
        ann = uuid.uuid4()
        a = connect(hub, ann, session_id="s1", token_id="t1")
        b = connect(hub, ann, session_id="s1", token_id="t2")
        c = connect(hub, ann, session_id="s2", token_id="t3")
        d = connect(hub, uuid.uuid4(), session_id="s3", token_id="t4")
        broker.publish(keys.REVOCATIONS_CHANNEL, Revocation(session_id="s1").to_json())

        async def closed() -> bool:
            return bool(a.closes and b.closes)

        await wait_for(closed)
        for conn in (a, b):
            assert conn.closes == [(Close.SESSION_REVOKED, "session revoked")]
            assert conn.received == [{"type": "session.revoked", "reason": events.REVOKED}]
        assert c.closes == d.closes == []
        broker.publish(keys.REVOCATIONS_CHANNEL, Revocation(token_id="t4").to_json())

        async def token_closed() -> bool:
            return bool(d.closes)

        await wait_for(token_closed)
        assert c.closes == []


async def test_last_local_interest_unsubscribes() -> None:
    async with instances(1) as (_, (hub,), (bus,)):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        room = uuid.uuid4()
        first, second = connect(hub, ann, room), connect(hub, ann, room)
        watcher = connect(hub, bob)
        await hub.watch(watcher.client, [ann])
        channels = [keys.conversation_channel(room), keys.user_channel(ann)]
        assert all(bus.subscribed(c) for c in channels)
        assert bus.subscribed(keys.presence_channel(ann))
        assert hub.remove(first) is False
        assert all(bus.subscribed(c) for c in channels)
        assert hub.remove(second) is True
        assert not any(bus.subscribed(c) for c in channels)
        hub.unwatch(watcher.client, [ann])
        assert not bus.subscribed(keys.presence_channel(ann))


async def test_malformed_bus_message_is_dropped_and_the_rest_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with instances(1) as (broker, (hub,), _):
        room = uuid.uuid4()
        ann = connect(hub, uuid.uuid4(), room)
        channel = keys.conversation_channel(room)
        broker.publish(channel, b"not an envelope")
        broker.publish(keys.REVOCATIONS_CHANNEL, b"{not json")
        broker.publish(channel, envelope.pack(events.encode({"type": "ok"})))
        with caplog.at_level(logging.WARNING):

            async def delivered() -> bool:
                return bool(ann.writes)

            await wait_for(delivered)
        assert ann.received == [{"type": "ok"}]
        assert "malformed bus message" in caplog.text and "malformed revocation" in caplog.text


async def test_a_conversations_messages_are_delivered_in_seq_order() -> None:
    async with instances(1) as (broker, (hub,), _):
        room = uuid.uuid4()
        ann = connect(hub, uuid.uuid4(), room)
        channel = keys.conversation_channel(room)

        def publish(seq: int) -> None:
            frame = events.encode({"type": "message.new", "seq": seq})
            broker.publish(channel, envelope.pack(frame, seq=seq))

        async def received(count: int) -> bool:
            return len(ann.received) >= count

        publish(1)
        await wait_for(lambda: received(1))
        publish(3)  # ahead of 2: held
        publish(4)
        await asyncio.sleep(0)
        publish(2)  # a later batch
        await wait_for(lambda: received(4))
        assert [f["seq"] for f in ann.received] == [1, 2, 3, 4]


@contextlib.asynccontextmanager
async def _room(
    recover: Recover | None = None,
) -> AsyncIterator[tuple[Callable[[int], None], RecordingConnection, uuid.UUID]]:
    """One member of one conversation on one hub holding out-of-order messages 50 ms; yields
    a publisher of `message.new` by seq, the member's connection and the conversation."""
    broker = MemoryBroker()
    bus = MemoryBus(broker)
    hub = Hub(bus, 1.0, hold=0.05)
    hub.recover = recover
    runner = asyncio.create_task(bus.run(hub.deliver, _no_reassert))
    try:
        while not bus.connected:
            await asyncio.sleep(0)
        room = uuid.uuid4()
        member = connect(hub, uuid.uuid4(), room)
        channel = keys.conversation_channel(room)

        def publish(seq: int) -> None:
            broker.publish(channel, envelope.pack(_new(seq), seq=seq))

        yield publish, member, room
    finally:
        runner.cancel()


def _new(seq: int) -> bytes:
    return events.encode({"type": "message.new", "seq": seq})


async def _received(member: RecordingConnection, count: int) -> list[int]:
    async def arrived() -> bool:
        return len(member.received) >= count

    await wait_for(arrived, timeout=2)
    return [f["seq"] for f in member.received]


async def test_a_lost_seq_holds_the_next_ones_only_briefly() -> None:
    async with _room() as (publish, member, _):
        for seq in (1, 3, 5, 4):  # 2 never comes
            publish(seq)
        assert await _received(member, 4) == [1, 3, 4, 5]


async def test_a_seq_still_missing_after_the_hold_is_read_from_the_store_in_order() -> None:
    """A slow instance's publish of seq 2 arrives after 3 and 4 were held past `hold`: 2 is read
    from the store (`recover`) and delivered first, and its late bus copy is not delivered
    again."""
    asked: list[tuple[uuid.UUID, int, int]] = []

    async def store(conversation: uuid.UUID, first: int, last: int) -> list[tuple[int, bytes]]:
        asked.append((conversation, first, last))
        return [(seq, _new(seq)) for seq in range(first, last + 1)]

    async with _room(store) as (publish, member, room):
        for seq in (1, 3, 4):
            publish(seq)
        assert await _received(member, 4) == [1, 2, 3, 4]
        publish(2)  # the late publish
        publish(5)
        assert await _received(member, 5) == [1, 2, 3, 4, 5]
        assert asked == [(room, 2, 2)]


async def test_a_gap_the_store_cannot_fill_is_released_as_it_is() -> None:
    async def store_down(conversation: uuid.UUID, first: int, last: int) -> list[tuple[int, bytes]]:
        raise OSError("store unreachable")

    async with _room(store_down) as (publish, member, _):
        for seq in (1, 3, 4):
            publish(seq)
        assert await _received(member, 3) == [1, 3, 4]


async def test_messages_held_during_a_gap_read_wait_for_their_own_predecessor() -> None:
    """While seq 2 is read from the store, 5 arrives ahead of 4: once the read is done 1-3 are
    delivered, and 5 is held for 4 (not released behind the read)."""
    reading, answer = asyncio.Event(), asyncio.Event()

    async def slow_store(conversation: uuid.UUID, first: int, last: int) -> list[tuple[int, bytes]]:
        reading.set()
        await answer.wait()
        return [(seq, _new(seq)) for seq in range(first, last + 1)]

    async with _room(slow_store) as (publish, member, _):
        for seq in (1, 3):
            publish(seq)
        await asyncio.wait_for(reading.wait(), 2)
        publish(5)
        await asyncio.sleep(0)
        answer.set()
        assert (await _received(member, 3))[:3] == [1, 2, 3]
        publish(4)
        assert await _received(member, 5) == [1, 2, 3, 4, 5]


async def test_a_resync_for_some_channels_reaches_their_connections_once_each() -> None:
    """A cluster shard that was away: only its channels' clients are told to resync."""
    async with instances(1) as (_, (hub,), _):
        away, fine = uuid.uuid4(), uuid.uuid4()
        both = connect(hub, uuid.uuid4(), away, fine)
        only_away = connect(hub, uuid.uuid4(), away)
        elsewhere = connect(hub, uuid.uuid4(), fine)
        channels = [keys.conversation_channel(away), keys.conversation_channel(away)]
        hub.send_to_topics([c.encode() for c in channels], events.resync())
        assert [f["type"] for f in both.received] == ["resync"]
        assert [f["type"] for f in only_away.received] == ["resync"]
        assert elsewhere.received == []


async def test_a_member_announced_on_the_bus_gets_the_conversation_then_each_message_once() -> None:
    """A user's join reaches this instance after the conversation's first message went out:
    once subscribed, the instance reads what was committed from the store. The user gets
    `conversation.added`, then every message in seq order, each once; what arrived while the
    read ran was held for everyone, and a member already here is not sent seq 1 again."""
    reading, answer = asyncio.Event(), asyncio.Event()

    async def store(conversation: uuid.UUID, first: int, last: int) -> list[tuple[int, bytes]]:
        reading.set()
        await answer.wait()
        return [(seq, _new(seq)) for seq in range(first, min(last, 2) + 1)]  # 1 and 2 committed

    async with instances(1) as (broker, (hub,), _):
        hub.recover = store
        room, ann, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        ann_conn, bob_conn = connect(hub, ann), connect(hub, bob, room)
        channel = keys.conversation_channel(room)

        def publish(seq: int) -> None:
            broker.publish(channel, envelope.pack(_new(seq), seq=seq))

        publish(1)
        assert await _received(bob_conn, 1) == [1]
        added = events.conversation_added({"id": str(room)})
        broker.publish(keys.user_channel(ann), envelope.pack(added, join=room))
        await reading.wait()
        publish(2)
        publish(3)  # both arrive while the read runs: held, for bob too
        await until(lambda: hub.is_member(ann, room))
        assert len(bob_conn.received) == 1 and ann_conn.received == []
        answer.set()
        assert await _received(bob_conn, 3) == [1, 2, 3]
        publish(4)
        assert await _received(bob_conn, 4) == [1, 2, 3, 4]
        await until(lambda: len(ann_conn.received) >= 5)
        assert [f["type"] for f in ann_conn.received[:1]] == ["conversation.added"]
        assert [f["seq"] for f in ann_conn.received[1:]] == [1, 2, 3, 4]

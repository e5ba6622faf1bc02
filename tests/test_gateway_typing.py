"""Conversations and typing across two real gateway instances."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from caches.redis import RedisClient
from gateway.client import GatewayClient, GatewayError
from tests.gateways import client_for, gateways


async def test_group_typing_reaches_other_members_on_both_instances(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        ann, bob, cat = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        b = await client_for(redis, gw2, bob)
        c = await client_for(redis, gw2, cat)
        a_second_tab = await client_for(redis, gw2, ann)
        created = await a.request(
            "conversation.create", kind="group", member_ids=[str(bob), str(cat)], name="trip"
        )
        conv = created["conversation"]
        assert created["created"] is True and conv["type"] == "group"
        assert sorted(conv["member_ids"]) == sorted(str(u) for u in (ann, bob, cat))
        for client in (a, b, c, a_second_tab):
            added = await client.next_event("conversation.added")
            assert added["conversation"]["id"] == conv["id"]

        assert (await a.request("typing.start", conversation_id=conv["id"]))["announced"]
        for client in (b, c):
            typing = await client.next_event("typing")
            assert typing == {
                "type": "typing",
                "conversation_id": conv["id"],
                "user_id": str(ann),
                "state": "start",
                "expires_in_ms": 10_000,
            }
        # A repeat inside the throttle window is not re-broadcast: the next event is the stop.
        assert not (await a.request("typing.start", conversation_id=conv["id"]))["announced"]
        await a.request("typing.stop", conversation_id=conv["id"])
        for client in (b, c):
            assert (await client.next_event("typing"))["state"] == "stop"
        # Bob types from gw2: Ann's tabs on both instances see it; Ann never saw her own.
        await b.send("typing.start", conversation_id=conv["id"])
        for client in (a, a_second_tab, c):
            event = await client.next_event("typing")
            assert (event["user_id"], event["state"]) == (str(bob), "start")
        # Disconnecting clears the indicator and tells the others.
        await b.close()
        for client in (a, c):
            event = await client.next_event("typing")
            assert (event["user_id"], event["state"]) == (str(bob), "stop")
        for client in (a, c, a_second_tab):
            await client.close()


async def test_non_member_typing_is_forbidden(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        a = await client_for(redis, gw)
        outsider = await client_for(redis, gw)
        created = await a.request(
            "conversation.create", kind="group", member_ids=[str(uuid.uuid4())]
        )
        with pytest.raises(GatewayError, match="forbidden"):
            await outsider.request("typing.start", conversation_id=created["conversation"]["id"])
        with pytest.raises(GatewayError, match="forbidden"):
            await outsider.request("typing.stop", conversation_id=str(uuid.uuid4()))
        await a.close()
        await outsider.close()


async def test_direct_conversation_created_once(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        b = await client_for(redis, gw2, bob)
        first = await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
        again = await b.request("conversation.create", kind="direct", member_ids=[str(ann)])
        assert first["created"] is True and again["created"] is False
        assert first["conversation"]["id"] == again["conversation"]["id"]
        # A member connecting later is subscribed to its conversations from the store.
        late: GatewayClient = await client_for(redis, gw2, bob)
        await a.send("typing.start", conversation_id=first["conversation"]["id"])
        assert (await late.next_event("typing"))["user_id"] == str(ann)
        with pytest.raises(GatewayError, match="invalid_field"):
            await a.request("conversation.create", kind="direct", member_ids=[str(ann)])
        for client in (a, b, late):
            await client.close()


async def test_conversation_events_arrive_in_one_order_on_every_instance(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """Two senders on two instances; receivers on both see the same sequence."""
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        users = [uuid.uuid4() for _ in range(4)]
        a, b, c, d = [
            await client_for(redis, gw, user)
            for gw, user in zip((gw1, gw2, gw1, gw2), users, strict=True)
        ]
        created = await a.request(
            "conversation.create", kind="group", member_ids=[str(u) for u in users[1:]]
        )
        conv = created["conversation"]["id"]
        for client in (b, c, d):
            await client.next_event("conversation.added")

        async def chatter(client: GatewayClient) -> None:
            for n in range(20):
                await client.send(
                    "typing.start" if n % 2 == 0 else "typing.stop", conversation_id=conv
                )

        await asyncio.gather(chatter(a), chatter(b))
        seen = []
        for receiver in (c, d):
            events = [await receiver.next_event("typing") for _ in range(40)]
            seen.append([(e["user_id"], e["state"]) for e in events])
        assert seen[0] == seen[1]
        for sender in (users[0], users[1]):
            states = [state for user, state in seen[0] if user == str(sender)]
            assert states == ["start", "stop"] * 10
        for client in (a, b, c, d):
            await client.close()


async def test_sending_a_message_stops_the_senders_typing_wherever_it_started(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """Ann types in one tab (gw2) and sends from another (gw1): Bob is told she stopped and
    gets her message, and her indicator is gone (her next start is announced again)."""
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        sender = await client_for(redis, gw1, ann)
        typer = await client_for(redis, gw2, ann)
        b = await client_for(redis, gw2, bob)
        created = await sender.request("conversation.create", kind="direct", member_ids=[str(bob)])
        conv = created["conversation"]["id"]
        for client in (sender, typer, b):
            await client.next_event("conversation.added")
        assert (await typer.request("typing.start", conversation_id=conv))["announced"]
        assert (await b.next_event("typing"))["state"] == "start"

        await sender.request(
            "message.send", conversation_id=conv, client_msg_id="k1", content="here it is"
        )
        seen: dict[str, dict[str, object]] = {}
        while len(seen) < 2:
            event = await b.next_event()
            if event["type"] in ("typing", "message.new"):
                seen[str(event["type"])] = event
        assert (seen["typing"]["user_id"], seen["typing"]["state"]) == (str(ann), "stop")
        assert seen["message.new"]["message"]["content"] == "here it is"  # type: ignore[index]
        assert (await typer.request("typing.start", conversation_id=conv))["announced"]
        for client in (sender, typer, b):
            await client.close()

"""One account cannot degrade everyone: per-user quotas across connections and instances, a
group size limit, and store batches that serve users in turn."""

from __future__ import annotations

import asyncio
import functools
import uuid
from pathlib import Path
from typing import Any

from caches import QuotaCache
from caches.redis import RedisClient
from gateway.client import GatewayClient
from gateway.services.quotas import Quota, Quotas
from gateway.store.group_commit import GroupCommit, Outcome, Work
from tests.gateways import client_for, gateways


async def test_a_batch_serves_owners_in_turn_not_in_arrival_order() -> None:
    batches: list[list[str]] = []

    async def commit(works: list[Work]) -> list[Outcome]:
        batches.append([work() for work in works])
        return [(True, None)] * len(works)

    commits: GroupCommit[Work] = GroupCommit(commit)
    flood = [commits.submit(lambda: "attacker", "attacker") for _ in range(300)]
    late = [commits.submit(functools.partial(str, f"user{n}"), f"user{n}") for n in range(3)]
    await asyncio.gather(*flood, *late)
    # All were queued before the first batch: it takes a share of the attacker's 300 writes
    # and the others' beside them, instead of the first 512 in arrival order.
    first = batches[0]
    assert {"user0", "user1", "user2"} <= set(first)
    assert first.count("attacker") == 32
    assert sum(len(b) for b in batches) == 303


async def test_sends_arriving_together_share_one_take_from_the_fleet(redis: RedisClient) -> None:
    # Each concurrent send once leased its own tokens from Redis (6 of a burst of 60): 40 sends
    # in flight at once emptied the fleet's bucket ten sends in and were refused.
    user = uuid.uuid4()
    quota = {"send": Quota(rate=0.001, burst=60)}
    first, second = (Quotas(quota, QuotaCache(redis), budget=2.0) for _ in range(2))
    waits = await asyncio.gather(*(first.take(user, "send") for _ in range(40)))
    assert waits == [0.0] * 40
    # The fleet lent the first instance what its sends used (plus at most one lease): the
    # second instance still finds most of the rest.
    later = await asyncio.gather(*(second.take(user, "send") for _ in range(20)))
    assert later.count(0.0) >= 14


async def _answers(client: GatewayClient, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send every frame at once; the answers by request id order."""
    for n, frame in enumerate(frames):
        await client.send(frame.pop("type"), id=f"q{n}", **frame)
    answers: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(20):
        while len(answers) < len(frames):
            frame = await client.events.get()
            if frame.get("id", "").startswith("q"):
                answers[frame["id"]] = frame
    return [answers[f"q{n}"] for n in range(len(frames))]


async def test_conversation_creation_is_limited_per_user_across_connections_and_instances(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        attacker, friend = uuid.uuid4(), uuid.uuid4()
        conns = [await client_for(redis, gw, attacker) for gw in (gw1, gw2, gw1)]
        strangers = [str(uuid.uuid4()) for _ in range(255)]  # 256 ids: the most allowed

        def create() -> dict[str, Any]:
            return {"type": "conversation.create", "kind": "group", "name": "spam",
                    "member_ids": [*strangers, str(friend)]}  # fmt: skip

        answers = [a for c in conns for a in await _answers(c, [create() for _ in range(6)])]
        created = [a for a in answers if a["type"] == "ack"]
        limited = [a for a in answers if a.get("code") == "rate_limited"]
        # The burst (5) for the user as a whole, plus what refilled meanwhile (6 a minute).
        assert 5 <= len(created) <= 6
        assert len(created) + len(limited) == 18
        assert all(a["retry_after_ms"] > 0 for a in limited)
        too_big = await _answers(
            conns[0], [{**create(), "member_ids": [str(uuid.uuid4()) for _ in range(257)]}]
        )
        assert too_big[0]["code"] == "invalid_field" and "256" in too_big[0]["message"]
        for client in conns:
            await client.close()


async def test_sends_are_limited_per_user_and_others_are_untouched(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    limits = {"user_send_rate": "1", "user_send_burst": "10"}
    with gateways(redis_url, tmp_path, 2, **limits) as (gw1, gw2):
        loud, quiet = uuid.uuid4(), uuid.uuid4()
        tabs = [await client_for(redis, gw, loud) for gw in (gw1, gw2)]
        other = await client_for(redis, gw2, quiet)
        created = await tabs[0].request(
            "conversation.create", kind="direct", member_ids=[str(quiet)]
        )
        room = created["conversation"]["id"]

        def send(tag: str) -> dict[str, Any]:
            return {"type": "message.send", "conversation_id": room, "client_msg_id": tag,
                    "content": tag}  # fmt: skip

        answers = [
            a
            for n, tab in enumerate(tabs)
            for a in await _answers(tab, [send(f"t{n}-{i}") for i in range(10)])
        ]
        acked = [a for a in answers if a["type"] == "ack"]
        limited = [a for a in answers if a.get("code") == "rate_limited"]
        assert 10 <= len(acked) <= 12  # the burst, plus a second or two of refill
        assert len(acked) + len(limited) == 20
        assert all(a["retry_after_ms"] > 0 for a in limited)
        # Another user is not touched by the loud one's quota.
        for n in range(10):
            await other.request(
                "message.send", conversation_id=room, client_msg_id=f"q{n}", content="hi"
            )
        for client in (*tabs, other):
            await client.close()

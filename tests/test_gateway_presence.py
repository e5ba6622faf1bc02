"""Presence across two real gateway instances sharing one Redis."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.conftest import wait_for
from tests.gateways import client_for, gateways, next_presence, watcher


async def test_every_transition_delivered_once_on_both_instances(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """A user with a tab on each instance; watchers on both see each transition exactly once.

    Absence of duplicates is checked with a sentinel: after each step, a second watched user
    changes, and that must be the very next event.
    """
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        ann, sentinel = uuid.uuid4(), uuid.uuid4()
        watchers = [await watcher(redis, gw, ann, sentinel) for gw in (gw1, gw2)]
        sentinel_tabs: list[GatewayClient] = []

        async def expect(*events: tuple[uuid.UUID, str]) -> None:
            for w in watchers:
                for user, status in events:
                    assert await next_presence(w) == (str(user), status)
            # Then flip the sentinel: it must be the next event, so nothing extra came before.
            if sentinel_tabs:
                await sentinel_tabs.pop().close()
                marker = (str(sentinel), "offline")
            else:
                sentinel_tabs.append(await client_for(redis, gw2, sentinel))
                marker = (str(sentinel), "online")
            for w in watchers:
                assert await next_presence(w) == marker

        tab1 = await client_for(redis, gw1, ann)
        await expect((ann, "online"))
        tab2 = await client_for(redis, gw2, ann)
        await expect()
        await tab1.request("presence.set", status="away")
        await expect()
        await tab2.request("presence.set", status="away")
        await expect((ann, "away"))
        await tab1.request("presence.set", status="online")
        await expect((ann, "online"))
        await tab1.close()  # the active tab went: the one left is away
        await expect((ann, "away"))
        await tab2.close()
        await expect((ann, "offline"))
        for w in watchers:
            await w.close()


async def test_subscribe_ack_carries_current_status_and_last_seen(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        ann, bob = uuid.uuid4(), uuid.uuid4()
        tab = await client_for(redis, gw, ann)
        bob_tab = await client_for(redis, gw, bob)
        watch = await client_for(redis, gw)
        await bob_tab.close()

        async def bob_offline() -> bool:
            query = await watch.request("presence.query", user_ids=[str(bob)])
            return bool(query["presence"][str(bob)]["status"] == "offline")

        await wait_for(bob_offline)  # the grace ran out
        ack = await watch.request("presence.subscribe", user_ids=[str(ann), str(bob)])
        assert ack["presence"][str(ann)] == {
            "user_id": str(ann),
            "status": "online",
            "last_seen": None,
        }
        bob_seen = ack["presence"][str(bob)]
        assert bob_seen["status"] == "offline"
        seen_at = datetime.fromisoformat(bob_seen["last_seen"])
        assert abs((datetime.now(UTC) - seen_at).total_seconds()) < 30
        query = await watch.request("presence.query", user_ids=[str(ann)])
        assert query["presence"][str(ann)] == {
            "user_id": str(ann),
            "status": "online",
            "last_seen": None,
        }
        await tab.close()
        went = await watch.next_event("presence")
        if went["user_id"] == str(bob):  # bob's own offline step may be announced just now
            went = await watch.next_event("presence")
        assert (went["user_id"], went["status"]) == (str(ann), "offline")
        # The event's last seen is the stored one (when the tab closed), as a query shows it.
        query = await watch.request("presence.query", user_ids=[str(ann)])
        assert went["last_seen"] is not None
        assert query["presence"][str(ann)]["last_seen"] == went["last_seen"]
        await watch.close()


async def test_reconnect_within_grace_does_not_flap(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, grace="3") as (gw1, gw2):
        ann, sentinel = uuid.uuid4(), uuid.uuid4()
        watch = await watcher(redis, gw2, ann, sentinel)
        phone = await client_for(redis, gw1, ann)
        assert await next_presence(watch) == (str(ann), "online")
        await phone.close()
        phone = await client_for(redis, gw2, ann)  # reconnects elsewhere inside the grace
        marker = await client_for(redis, gw1, sentinel)
        assert await next_presence(watch) == (str(sentinel), "online")
        for client in (phone, marker, watch):
            await client.close()


async def test_sigkilled_instance_users_go_offline_within_lease_and_sweep(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL one instance: the other sees its users offline within lease TTL + sweep."""
    with gateways(redis_url, tmp_path, 2) as (doomed, survivor):
        ann = uuid.uuid4()
        watch = await watcher(redis, survivor, ann)
        tab = await client_for(redis, doomed, ann)
        assert await next_presence(watch) == (str(ann), "online")
        doomed.stop(signal.SIGKILL)
        lease = float(doomed.settings["lease_ttl"]) + float(doomed.settings["sweep_interval"])
        # The bound, as a deadline on the event (plus the watcher's delivery time).
        assert await next_presence(watch, timeout=lease + 1.5) == (str(ann), "offline")
        await tab.ws.close()
        await watch.close()


async def test_silent_connection_closed_4000(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        from tests.gateways import token_for

        silent = await GatewayClient.connect(gw.url, await token_for(redis), auto_heartbeat=False)
        assert silent.hello["heartbeat_interval_ms"] == 500
        assert await silent.wait_closed(timeout=5) == 4000
        beating = await client_for(redis, gw)
        await beating.request("heartbeat")
        await beating.close()

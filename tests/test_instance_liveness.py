"""A dead instance is noticed in seconds: each instance keeps a liveness record in Redis; when
one lapses, another ends its leases (grace applies), long before the client leases (30 s here)
would. An instance only paused shorter than the record's TTL causes no flap; one paused longer
is taken for dead, then takes its leases back when it resumes."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from caches import keys
from caches.redis import RedisClient
from tests.gateways import client_for, gateways, next_presence, watcher

TTL = 1.5
GRACE = 0.3
TICK = TTL / 4
"""How often an instance renews its record and looks at the others' (a second, or a quarter of
the TTL when that is shorter)."""
SETTINGS = {"lease_ttl": "30", "instance_ttl": str(TTL), "grace": str(GRACE)}
BOUND = TTL + TICK + GRACE + 1.5
"""Offline after a crash: the record's TTL, a look, the grace, and delivery's slack."""
SETTLING = TICK + TTL + TICK
"""An instance judges others only once it has kept its own record for a whole TTL and a look
(its first beat a look after it is up): after a Redis outage everyone renews before anyone is
taken for dead. A survivor started just before the crash makes the crash wait for that."""


async def test_a_sigkilled_instance_users_are_offline_within_its_ttl_and_grace(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, **SETTINGS) as (doomed, survivor):
        survivor_up = time.monotonic()
        ann = uuid.uuid4()
        watch = await watcher(redis, survivor, ann)
        tab = await client_for(redis, doomed, ann)
        assert await next_presence(watch) == (str(ann), "online")
        doomed.stop(signal.SIGKILL)
        killed = time.monotonic()
        # The survivor's own settling may end after the crash's record lapses: the later one.
        bound = max(BOUND, survivor_up + SETTLING - killed + TICK + GRACE + 1.5)
        assert await next_presence(watch, timeout=bound) == (str(ann), "offline")
        await tab.ws.close()
        await watch.close()


async def test_an_instance_is_known_to_the_others_before_its_first_client(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """A crash right after its first connections must be noticed too: an instance whose first
    beat came only after it had started serving left those users online for their whole
    client lease when it died before that beat."""
    with gateways(redis_url, tmp_path, 1, **SETTINGS) as (fresh,):
        instance = fresh.settings["instance_id"]
        assert instance in await redis.smembers(keys.INSTANCES)  # the others look there
        assert await redis.exists(keys.instance_alive(instance))


async def test_an_instance_paused_shorter_than_its_ttl_causes_no_flap(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, **{**SETTINGS, "instance_ttl": "4"}) as (slow, other):
        ann, sentinel = uuid.uuid4(), uuid.uuid4()
        watch = await watcher(redis, other, ann, sentinel)
        tab = await client_for(redis, slow, ann)
        assert await next_presence(watch) == (str(ann), "online")
        slow.proc.send_signal(signal.SIGSTOP)
        try:
            # Nothing about ann may arrive while it is paused (a GC pause, a stall).
            with pytest.raises(TimeoutError):
                await next_presence(watch, timeout=1.5)
        finally:
            slow.proc.send_signal(signal.SIGCONT)
        await tab.request("heartbeat")  # it serves again
        marker = await client_for(redis, other, sentinel)
        # The first event after the pause is the sentinel's: ann never went offline.
        assert await next_presence(watch, timeout=BOUND) == (str(sentinel), "online")
        for client in (tab, marker, watch):
            await client.close()


async def test_an_instance_paused_longer_than_its_ttl_takes_its_users_back(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, **SETTINGS) as (paused, other):
        ann = uuid.uuid4()
        watch = await watcher(redis, other, ann)
        tab = await client_for(redis, paused, ann)
        assert await next_presence(watch) == (str(ann), "online")
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            assert await next_presence(watch, timeout=BOUND) == (str(ann), "offline")
        finally:
            paused.proc.send_signal(signal.SIGCONT)
        # Resumed, it finds its record lapsed and takes its leases again: online once more,
        # on the connection that never closed.
        assert await next_presence(watch, timeout=TICK + 2) == (str(ann), "online")
        await tab.request("heartbeat")
        await tab.close()
        await watch.close()


async def test_a_restarted_instance_ends_what_its_previous_run_left(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """The same instance id started again right after a crash (before its record lapsed):
    the leases of its previous run are ended at start, not left to their client lease."""
    with gateways(redis_url, tmp_path, 1, **SETTINGS) as (watching,):
        ann = uuid.uuid4()
        watch = await watcher(redis, watching, ann)
        with gateways(redis_url, tmp_path, 1, **SETTINGS, instance_id="fixed-id") as (first,):
            tab = await client_for(redis, first, ann)
            assert await next_presence(watch) == (str(ann), "online")
            first.stop(signal.SIGKILL)
        with gateways(redis_url, tmp_path, 1, **SETTINGS, instance_id="fixed-id"):
            assert await next_presence(watch, timeout=GRACE + 2) == (str(ann), "offline")
        await tab.ws.close()
        await watch.close()

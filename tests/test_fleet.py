"""The load generator's worker processes (`loadtest.fleet`): connections spread over several
processes, one heartbeat burst across all of them, every answer counted once."""

from __future__ import annotations

from pathlib import Path

from caches.redis import RedisClient
from loadtest.fleet import Fleet, processes_for
from tests.gateways import gateways, token_for


async def test_connections_over_two_processes_each_heartbeat_answered_once(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        tokens = [await token_for(redis) for _ in range(61)]  # not a multiple of the workers
        async with Fleet(gw.url, tokens, 2) as fleet:
            assert (fleet.connected, fleet.refused) == (61, 0)
            burst = await fleet.heartbeat_burst(0.2)
            again = await fleet.heartbeat_burst(0.2)
    for answered in (burst, again):
        assert answered.failed == 0
        assert len(answered.latencies) == 61
        assert all(0 <= latency < 5 for latency in answered.latencies)


async def test_a_connection_the_gateway_refuses_counts_as_a_failure(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        tokens = [await token_for(redis), "not-a-token", await token_for(redis)]
        async with Fleet(gw.url, tokens, 2, timeout=5) as fleet:
            # The bad token is refused after the upgrade: it counts against the burst instead.
            burst = await fleet.heartbeat_burst(0.1, deadline=3)
    assert fleet.connected + fleet.refused == 3
    assert len(burst.latencies) == 2
    assert burst.failed == fleet.connected - 2


def test_enough_processes_for_the_open_files_limit() -> None:
    assert processes_for(1) == 1
    assert processes_for(10**9) > 1

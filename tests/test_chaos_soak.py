"""The chaos soak's one-minute version (`make chaos-soak` runs it for 30): two instances, a
Redis and a PostgreSQL, 40 clients resuming with the Python SDK, a random fault every 6-12 s.
Every acknowledged message reaches every member exactly once and in order, the store holds
exactly what was acknowledged, presence shows every connected user online, and descriptors,
tasks and memory come back to their baseline."""

from __future__ import annotations

import pytest

from loadtest.chaos_soak import run_chaos


@pytest.mark.timeout(180)
async def test_a_minute_of_faults_loses_nothing() -> None:
    result = await run_chaos(minutes=1.0, clients=40, instances=2, fault_every=(6, 12), rate=10)
    assert result.problems == []
    assert len(result.faults) >= 3
    assert result.acknowledged > 300
    assert result.delivered_exactly_once and result.store_matches_acks
    assert result.presence_matches

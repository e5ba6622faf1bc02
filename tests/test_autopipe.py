"""The auto-pipelined clients: one write for many callers, redis-py's reply handling, the db
index of the URL, failures that stay with their caller."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import DataError, NoScriptError, ResponseError

from caches import connect
from caches.redis import ClientOptions, EmbeddedRedis, RedisClient
from gateway.autopipe import auto_pipelined
from loadtest.valkey_cluster import free_ports
from tests.conftest import wait_for
from tests.faultproxy import FaultProxy


async def answers_again(client: RedisClient, key: str, value: str) -> None:
    """Wait until the lane, reconnected, reads `value` at `key`."""

    async def answers() -> bool:
        with contextlib.suppress(redis.exceptions.RedisError):
            return await client.get(key) == value
        return False

    await wait_for(answers)


@contextlib.asynccontextmanager
async def pipelined(base: RedisClient) -> AsyncIterator[RedisClient]:
    assert isinstance(base, aioredis.Redis)
    client, sender = auto_pipelined(base, deadline=2.0)
    runner = asyncio.create_task(sender.run())
    try:
        yield client
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_many_callers_share_round_trips_and_get_their_own_replies(
    redis_url: str, redis: RedisClient
) -> None:
    base = connect(f"{redis_url}?db=2" if redis_url.startswith("unix") else redis_url)
    async with pipelined(base) as client:
        await client.flushdb()
        assert await asyncio.gather(*(client.set(f"k{i}", i) for i in range(200)))
        assert await asyncio.gather(*(client.get(f"k{i}") for i in range(200))) == [
            str(i) for i in range(200)
        ]
        assert await client.exists("k1", "k2", "missing") == 2  # callbacks: ints stay ints
        assert await client.zadd("z", {"a": 1.5}) == 1
        assert await client.zrange("z", 0, -1, withscores=True) == [("a", 1.5)]
        # SCRIPT LOAD is two words on the wire.
        sha = await client.script_load("return ARGV[1]")
        assert await client.evalsha(sha, 0, "echo") == "echo"
        with pytest.raises(NoScriptError):
            await client.evalsha("0" * 40, 0)
        # One caller's error is its own: the others in the same batch succeed.
        results = await asyncio.gather(
            client.incr("k1"), client.lpush("k2", "x"), client.incr("k1"), return_exceptions=True
        )
        assert results[0] == 2 and isinstance(results[1], ResponseError) and results[2] == 3
        with pytest.raises(DataError):
            await client.set("k", object())  # type: ignore[arg-type]
        assert await client.get("k1") == "3"
    if redis_url.startswith("unix"):
        assert await base.dbsize() == 201  # k0..k199 and z
        assert await redis.exists("k1") == 0  # db 2, not the fixture's db 0
    await base.aclose()


async def test_a_hung_server_fails_the_callers_within_the_deadline(tmp_path: object) -> None:

    with EmbeddedRedis() as private:
        base = connect(private.url)
        assert isinstance(base, aioredis.Redis)
        client, sender = auto_pipelined(base, deadline=0.3)
        runner = asyncio.create_task(sender.run())
        try:
            assert await client.set("k", "1")
            os.kill(private.pid, signal.SIGSTOP)
            try:
                async with asyncio.timeout(0.3 + 0.5):  # the deadline, as a deadline
                    with pytest.raises(redis.exceptions.RedisError):
                        await client.get("k")
            finally:
                os.kill(private.pid, signal.SIGCONT)

            await answers_again(client, "k", "1")  # the lane reconnects once the server does
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await base.aclose()


async def test_plain_pipelines_ride_the_lane_and_never_wait_for_the_pool(
    redis_url: str, redis: RedisClient
) -> None:
    """A burst of plain pipelines (auth and heartbeats use them) with a one-connection pool:
    none waits for a pooled connection; MULTI pipelines keep their own connection (atomic)."""
    base = connect(redis_url, ClientOptions(max_connections=1))
    async with pipelined(base) as client:

        async def one(n: int) -> list[object]:
            pipe = client.pipeline(transaction=False)
            pipe.set(f"p{n}", n)
            pipe.get(f"p{n}")
            pipe.lpush(f"p{n}", "x")  # the wrong type: an error in its slot, not raised
            return await pipe.execute(raise_on_error=False)

        results = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(2000))), 10)
        pool = base.connection_pool  # type: ignore[union-attr]
        assert not pool._available_connections and not pool._in_use_connections  # never used
        assert [r[:2] for r in results] == [[True, str(n)] for n in range(2000)]
        assert all(isinstance(r[2], ResponseError) for r in results)
        with pytest.raises(ResponseError):
            pipe = client.pipeline(transaction=False)
            pipe.lpush("p1", "x")
            await pipe.execute()
        atomic = client.pipeline()  # MULTI/EXEC on a pooled connection, as redis-py does it
        atomic.incr("counter")
        atomic.incr("counter")
        assert await atomic.execute() == [1, 2]
    await base.aclose()


async def test_a_connection_lost_under_a_command_retries_it_once_on_a_fresh_one() -> None:
    """As redis-py's own retry on a connection error: a command in flight when its connection
    is cut (a reset, a restarted proxy) is sent once more on the next connection; a second loss
    fails it."""
    (port,) = free_ports(1)
    with EmbeddedRedis(tcp_port=port), FaultProxy("127.0.0.1", port) as proxy:
        base = connect(f"redis://127.0.0.1:{proxy.port}")
        async with pipelined(base) as client:
            assert await client.set("k", "1")
            proxy.latency(0.2)  # the next command is in flight when its connection is cut
            pending = asyncio.ensure_future(client.incr("k"))
            await asyncio.sleep(0.05)  # the command is on the wire, its reply 0.2 s away
            proxy.reset()
            proxy.clear()  # the connection stays cut; the next one is clean
            counted = await asyncio.wait_for(pending, 2.0)
            assert counted in (2, 3)  # at least once, as redis-py

            proxy.latency(0.2)
            doomed = asyncio.ensure_future(client.get("k"))
            await asyncio.sleep(0.05)
            proxy.reset()  # and every new connection too: the retry fails as well
            with pytest.raises(redis.exceptions.ConnectionError):
                await asyncio.wait_for(doomed, 2.0)
            proxy.clear()
            await answers_again(client, "k", str(counted))
        await base.aclose()


async def test_a_lane_stopped_while_waiting_to_reconnect_fails_what_it_holds() -> None:
    """A lane stopped (a cluster node no longer a primary: its lane is retired) while it
    waits between connection attempts fails the commands queued meanwhile; they would wait
    for ever, and their callers with them."""
    (port,) = free_ports(1)  # nothing listens there: each attempt is refused at once
    base = connect(f"redis://127.0.0.1:{port}", ClientOptions(retries=0))
    assert isinstance(base, aioredis.Redis)
    client, sender = auto_pipelined(base, deadline=1.0)
    runner = asyncio.create_task(sender.run())
    await asyncio.sleep(0.5)  # a few refused attempts: the lane now waits to try again
    queued = asyncio.ensure_future(client.get("k"))
    await asyncio.sleep(0)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    with pytest.raises(redis.exceptions.ConnectionError):
        await asyncio.wait_for(queued, 1.0)
    await base.aclose()

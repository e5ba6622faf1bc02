"""The two clocks of an instance: silent connections by deadline heap, overdue requests by
start order (pure: the caller passes now); and through a real instance, a slow backend is not
client silence."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from caches import EmbeddedRedis, connect
from gateway.client import GatewayClient
from gateway.handlers import RequestBudget
from gateway.realtime.connection import ConnState
from gateway.realtime.silence import SilenceWatch
from loadtest.valkey_cluster import free_ports
from tests.fakes import RecordingConnection, client_state
from tests.faultproxy import FaultProxy
from tests.gateways import gateways, token_for


def test_silence_reports_each_silent_connection_once_and_spares_the_heard() -> None:
    """Never before the deadline, at most one tick (0.25) after it."""
    watch = SilenceWatch(limit=1.0, tick=0.25)
    quiet, chatty, closed = (RecordingConnection(client_state()) for _ in range(3))
    for conn in (quiet, chatty, closed):
        watch.add(conn)
    chatty.last_heard = 0.8
    closed.state = ConnState.CLOSING
    assert watch.due(0.5) == []
    assert watch.due(1.0) == [quiet]
    assert watch.due(1.5) == []  # quiet was reported once; chatty's deadline moved to 1.8
    assert len(watch) == 1
    assert watch.due(1.79) == []
    assert watch.due(2.0) == [chatty]
    assert len(watch) == 0


def test_silence_check_touches_only_what_is_due() -> None:
    watch = SilenceWatch(limit=10.0)
    conns = [RecordingConnection(client_state(), last_heard=i / 1000) for i in range(1000)]
    for conn in conns:
        watch.add(conn)
    assert watch.due(10.0005) == conns[:1]
    assert len(watch) == 999  # nothing else was popped or pushed


async def test_budget_cancels_only_overdue_requests() -> None:
    now = [100.0]
    budget = RequestBudget(1.0, clock=lambda: now[0])
    release = asyncio.Event()

    async def request() -> str:
        task = budget.start()
        try:
            await release.wait()
            return "done"
        except asyncio.CancelledError:
            assert budget.is_overdue(task)
            return "overdue"
        finally:
            budget.finish(task)

    old = asyncio.create_task(request())
    await asyncio.sleep(0)  # let it start (and note its start) at 100.0
    now[0] = 100.6
    young = asyncio.create_task(request())
    await asyncio.sleep(0)
    assert budget.cancel_overdue() == 0
    now[0] = 101.0
    assert budget.cancel_overdue() == 1  # the old one only: 1.0 s, the young 0.4 s
    release.set()
    assert await old == "overdue" and await young == "done"
    assert old.cancelling() == 0  # the budget withdrew its cancellation


async def test_a_request_waiting_on_a_slow_redis_is_not_silence(tmp_path: Path) -> None:
    """Frames are handled in turn: while one waits on Redis (within the budget) the client's
    next frames, heartbeats too, wait unread. With Redis 2 s away and a 1 s lease, the
    connection is answered and kept, not closed as silent (4000)."""
    (port,) = free_ports(1)
    with (
        EmbeddedRedis(tcp_port=port),
        FaultProxy("127.0.0.1", port) as proxy,
        gateways(
            f"redis://127.0.0.1:{proxy.port}",
            tmp_path,
            lease_ttl="1",
            heartbeat_interval="0.3",
            redis_timeout="4",
        ) as (gw,),
    ):
        redis = connect(f"redis://127.0.0.1:{port}")
        client = await GatewayClient.connect(gw.url, await token_for(redis, uuid.uuid4()))
        try:
            proxy.latency(1.0)  # each way: one Redis round trip takes 2 s, twice the lease
            answer = await client.request("conversations.list", timeout=6)
            assert answer["type"] in ("ack", "error"), answer
            assert answer.get("code") in (None, "unavailable"), answer
            proxy.clear()
            assert (await client.request("heartbeat"))["type"] == "heartbeat_ack"
            assert client.ws.close_code is None
        finally:
            proxy.clear()
            await client.close()
            await redis.aclose()

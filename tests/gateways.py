"""Real gateway processes for integration tests: started by PID, on port 0, stopped after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from websockets.exceptions import ConnectionClosed, InvalidStatus

from caches import SessionCache
from caches.redis import RedisClient
from gateway.auth import mint_token
from gateway.client import GatewayClient
from loadtest.launcher import Launched, launch

SECRET = "integration-test-secret-0123456789abcdef"

# Short settings so timeouts, grace and sweeps happen inside a test's deadline.
FAST = {
    "heartbeat_interval": "0.5",
    "lease_ttl": "1.5",
    "grace": "0.3",
    "sweep_interval": "0.3",
    "probe_interval": "0.5",
    "drain_timeout": "2",
}


GatewayProcess = Launched


def start_gateway(
    redis_url: str, workdir: Path, name: str = "gw", **settings: str
) -> GatewayProcess:
    """Start `presence-gateway serve` with the fast test settings and wait for its ready line."""
    config = {
        **FAST,
        "redis_url": redis_url,
        "store": str(workdir / "store.sqlite3"),
        "jwt_secret": SECRET,
        "instance_id": f"{name}-{uuid.uuid4().hex[:6]}",
        **settings,
    }
    return launch(config, workdir, workdir / f"{config['instance_id']}.log")


@contextlib.contextmanager
def gateways(
    redis_url: str, workdir: Path, count: int = 1, **settings: str
) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    try:
        for index in range(count):
            started.append(start_gateway(redis_url, workdir, f"gw{index + 1}", **settings))
        yield started
    finally:
        for process in started:
            process.stop()


async def token_for(redis: RedisClient, user: uuid.UUID | None = None, ttl: float = 300) -> str:
    return await mint_token(SessionCache(redis), SECRET, user or uuid.uuid4(), ttl=ttl)


async def client_for(
    redis: RedisClient, gateway: GatewayProcess, user: uuid.UUID | None = None
) -> GatewayClient:
    return await GatewayClient.connect(gateway.url, await token_for(redis, user))


async def watcher(redis: RedisClient, gw: GatewayProcess, *users: uuid.UUID) -> GatewayClient:
    """A client of `gw` watching the presence of `users`."""
    client = await client_for(redis, gw)
    await client.request("presence.subscribe", user_ids=[str(u) for u in users])
    return client


async def next_presence(client: GatewayClient, timeout: float = 5.0) -> tuple[str, str]:
    """The next presence event's user and status."""
    event = await client.next_event("presence", timeout)
    return event["user_id"], event["status"]


async def connect_or_refusal(url: str, token: str) -> GatewayClient | int:
    """A connected client, or how the gateway refused: the HTTP status before the upgrade, or
    the close code after it."""
    try:
        return await GatewayClient.connect(url, token)
    except InvalidStatus as exc:
        return exc.response.status_code
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return exc.rcvd.code

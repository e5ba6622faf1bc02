"""A Redis that lost its data without dropping anyone's connection (FLUSHALL): noticed within
a couple of seconds, sessions, leases and revocations re-asserted, and watchers see no change."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt

from caches import PresenceCache, PresenceStatus, SessionCache, connect, keys
from caches.redis import EmbeddedRedis
from gateway.auth import mint_token
from gateway.client import GatewayClient
from tests.conftest import wait_for
from tests.gateways import SECRET, gateways

NOTICED_WITHIN = 3.0
"""Seconds from the flush to everything re-asserted: a couple of seconds, plus a loaded
machine's slack."""


async def test_a_flushed_redis_is_noticed_and_reasserted_with_no_flap(tmp_path: Path) -> None:
    with EmbeddedRedis() as private:
        setup = connect(private.url)
        sessions = SessionCache(setup)
        ann, watcher_user = uuid.uuid4(), uuid.uuid4()
        token = await mint_token(sessions, SECRET, ann, session_id="ann-phone")
        revoked = await mint_token(sessions, SECRET, ann, session_id="ann-phone")
        jti = str(jwt.decode(revoked, options={"verify_signature": False})["jti"])
        watcher_token = await mint_token(sessions, SECRET, watcher_user)
        with gateways(private.url, tmp_path, 1) as (gw,):
            a = await GatewayClient.connect(gw.url, token)
            w = await GatewayClient.connect(gw.url, watcher_token)
            ack = await w.request("presence.subscribe", user_ids=[str(ann)])
            assert ack["presence"][str(ann)]["status"] == "online"
            victim = await GatewayClient.connect(gw.url, revoked)
            await sessions.invalidate_token(jti)
            assert await victim.wait_closed() == 4002

            await setup.flushall()
            flushed = time.monotonic()

            async def reasserted() -> bool:
                session = await sessions.get("ann-phone")
                status = await PresenceCache(setup).get_status(ann)
                blacklisted = await setup.exists(keys.blacklist_token(jti))
                return session is not None and status is PresenceStatus.ONLINE and bool(blacklisted)

            await wait_for(reasserted, timeout=NOTICED_WITHIN + 5)
            assert time.monotonic() - flushed < NOTICED_WITHIN
            # One's own token works again at once (no 4001 "session not found").
            await (await GatewayClient.connect(gw.url, token)).close()
            # Watchers saw no change: no `online` without an `offline` before it, or either.
            await a.request("heartbeat")
            await w.request("presence.query", user_ids=[str(ann)])
            assert [f for f in _queued(w) if f["type"] == "presence"] == []
            for client in (a, w):
                await client.close()
        await setup.aclose()


def _queued(client: GatewayClient) -> list[dict[str, object]]:
    frames = []
    while not client.events.empty():
        frames.append(client.events.get_nowait())
    return frames

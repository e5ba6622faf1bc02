"""Revocation fails closed: what an instance learned was revoked stays revoked when Redis loses
its data (killed and restarted empty), on every instance and on one started afterwards, and the
blacklist is written back to Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import jwt

from caches import SessionCache, connect, keys
from caches.redis import EmbeddedRedis
from gateway.auth import mint_token
from gateway.client import GatewayClient, GatewayError
from tests.conftest import wait_for
from tests.gateways import SECRET, gateways, start_gateway


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def _refusal(url: str, token: str) -> str:
    """Why the gateway refused the token; fails the test when it admitted it."""
    try:
        client = await GatewayClient.connect(url, token)
    except GatewayError as exc:
        return str(exc)
    await client.close()
    raise AssertionError("the token was admitted")


async def test_revocations_outlive_a_redis_that_lost_its_data(tmp_path: Path) -> None:
    with EmbeddedRedis() as private:
        setup = connect(private.url)
        sessions = SessionCache(setup)
        user = uuid.uuid4()
        live = await mint_token(sessions, SECRET, user, session_id="kept")
        revoked = await mint_token(sessions, SECRET, user, session_id="kept")
        doomed = await mint_token(sessions, SECRET, user, session_id="logged-out")
        with gateways(private.url, tmp_path, 2) as (gw1, gw2):
            keeper = await GatewayClient.connect(gw1.url, live)
            # A connection of each doomed credential on each instance: once all are closed,
            # both instances have learned both revocations.
            victims = [
                await GatewayClient.connect(gw.url, token)
                for gw in (gw1, gw2)
                for token in (revoked, doomed)
            ]
            await sessions.invalidate_token(_jti(revoked))
            assert await sessions.delete("logged-out")
            for victim in victims:
                assert await victim.wait_closed() == 4002
            for gw in (gw1, gw2):
                assert "revoked" in await _refusal(gw.url, revoked)
            await setup.aclose()

            private.kill()
            private.restart()  # back, and empty
            setup = connect(private.url)

            async def kept_session_restored() -> bool:
                return await SessionCache(setup).get("kept") is not None

            await wait_for(kept_session_restored, timeout=15)
            for gw in (gw1, gw2):
                assert "revoked" in await _refusal(gw.url, revoked)
                assert "unauthenticated" in await _refusal(gw.url, doomed)
                await (await GatewayClient.connect(gw.url, live)).close()

            async def blacklist_written_back() -> bool:
                return bool(await setup.exists(keys.blacklist_token(_jti(revoked))))

            await wait_for(blacklist_written_back, timeout=5)
            # An instance started now, on the same store, knows them too (from the store).
            late = start_gateway(private.url, tmp_path, "late")
            try:
                assert "revoked" in await _refusal(late.url, revoked)
                assert "revoked" in await _refusal(late.url, doomed)
            finally:
                late.stop()
            assert await SessionCache(setup).get("logged-out") is None
            await keeper.close()
            await setup.aclose()


async def test_a_blacklist_nobody_announced_is_remembered_once_met(tmp_path: Path) -> None:
    """A blacklist entry written straight into Redis (no announcement): the first refusal
    teaches the instance, so the token stays refused after Redis loses its data."""
    with EmbeddedRedis() as private:
        setup = connect(private.url)
        sessions = SessionCache(setup)
        user = uuid.uuid4()
        live = await mint_token(sessions, SECRET, user, session_id="kept")
        quiet = await mint_token(sessions, SECRET, user, session_id="kept")
        with gateways(private.url, tmp_path, 1) as (gw,):
            keeper = await GatewayClient.connect(gw.url, live)
            await setup.set(keys.blacklist_token(_jti(quiet)), "1", ex=600)
            assert "revoked" in await _refusal(gw.url, quiet)
            await setup.flushall()

            async def kept_session_restored() -> bool:
                return await SessionCache(setup).get("kept") is not None

            await wait_for(kept_session_restored, timeout=15)
            assert "revoked" in await _refusal(gw.url, quiet)
            await keeper.close()
        await setup.aclose()

"""A Redis that stops answering (SIGSTOP) or lives in another db: every request still gets its
answer within the budget, cleanups and the drain still finish, and keys land where the URL says."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect as ws_connect

from caches import connect, keys
from caches.redis import EmbeddedRedis
from gateway.client import GatewayClient, GatewayError
from tests.gateways import gateways, token_for
from tests.http_get import http_get

BUDGET = 1.0
SLACK = 1.0
"""What a loaded machine may add to the budget before an answer counts as late."""


def _status(url: str) -> int:
    return http_get(url, timeout=10)[0]


async def _answer(work: Callable[[], Awaitable[Any]]) -> Any:
    """The answer (an error frame's code for an error), which must come within the bound."""
    async with asyncio.timeout(BUDGET + SLACK):
        try:
            return await work()
        except GatewayError as exc:
            return exc.code


async def test_stalled_redis_every_request_answered_within_the_budget(tmp_path: Path) -> None:
    with EmbeddedRedis() as private:
        setup = connect(private.url)
        ann, bob = uuid.uuid4(), uuid.uuid4()
        ann_token, bob_token, late_token = (
            await token_for(setup, ann),
            await token_for(setup, bob),
            await token_for(setup),
        )
        await setup.aclose()
        with gateways(private.url, tmp_path, 1, redis_timeout=str(BUDGET)) as (gw,):
            a = await GatewayClient.connect(gw.url, ann_token, auto_heartbeat=False)
            b = await GatewayClient.connect(gw.url, bob_token, auto_heartbeat=False)
            created = await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
            conversation_id = created["conversation"]["id"]
            os.kill(private.pid, signal.SIGSTOP)
            try:

                async def new_connection() -> int | None:
                    async with ws_connect(
                        gw.url, additional_headers={"Authorization": f"Bearer {late_token}"}
                    ) as ws:
                        await ws.wait_closed()
                        return ws.close_code

                async def readyz() -> int:
                    return await asyncio.to_thread(_status, f"{gw.http}/readyz")

                timeout = BUDGET + SLACK + 5  # the client's own wait: longer than any bound
                results = await asyncio.gather(
                    _answer(
                        lambda: a.request(
                            "typing.start", conversation_id=conversation_id, timeout=timeout
                        )
                    ),
                    _answer(lambda: a.request("heartbeat", timeout=timeout)),
                    _answer(
                        lambda: b.request("presence.query", user_ids=[str(ann)], timeout=timeout)
                    ),
                    _answer(new_connection),
                    _answer(readyz),
                )
            finally:
                os.kill(private.pid, signal.SIGCONT)
            assert list(results) == ["unavailable", "unavailable", "unavailable", 1013, 503]
            # Redis is back: requests succeed again, cleanup and drain finish.
            assert (await a.request("heartbeat"))["type"] == "heartbeat_ack"
            await a.close()
            await b.close()
            assert gw.stop(timeout=10) == 0  # drained and exited by itself, not killed
            assert "never retrieved" not in gw.log()  # every failed command reached its caller


async def test_typing_keys_live_in_the_urls_db(tmp_path: Path) -> None:
    with EmbeddedRedis() as private:
        url = f"{private.url}?db=3"
        db3, db0 = connect(url), connect(private.url)
        ann, bob = uuid.uuid4(), uuid.uuid4()
        with gateways(url, tmp_path, 1) as (gw,):
            a = await GatewayClient.connect(gw.url, await token_for(db3, ann))
            b = await GatewayClient.connect(gw.url, await token_for(db3, bob))
            created = await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
            conversation = uuid.UUID(created["conversation"]["id"])
            assert (await a.request("typing.start", conversation_id=str(conversation)))["announced"]
            assert (await b.next_event("typing"))["state"] == "start"
            key = keys.typing(conversation, ann)
            assert await db3.exists(key) == 1
            assert await db0.exists(key) == 0
            assert await db0.dbsize() == 0  # nothing of the gateway's in db 0
            await a.close()
            await b.close()
        await db3.aclose()
        await db0.aclose()


async def test_redis_killed_mid_conversation_loses_nothing(tmp_path: Path) -> None:
    """Send, read and history work from the store while Redis is dead; after it comes back
    empty, nothing is lost and no stale or empty cache is served as truth."""
    with EmbeddedRedis() as private:
        setup = connect(private.url)
        ann, bob = uuid.uuid4(), uuid.uuid4()
        tokens = [await token_for(setup, ann), await token_for(setup, bob)]
        await setup.aclose()
        with gateways(private.url, tmp_path, 1, redis_timeout="1") as (gw,):
            a = await GatewayClient.connect(gw.url, tokens[0])
            b = await GatewayClient.connect(gw.url, tokens[1])
            created = await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
            room = created["conversation"]["id"]
            for n in range(2):
                await a.request(
                    "message.send", conversation_id=room, client_msg_id=f"m{n}", content=f"{n}"
                )
            assert [
                m["seq"]
                for m in (await b.request("messages.list", conversation_id=room))["messages"]
            ] == [1, 2]
            private.kill()
            async with asyncio.timeout(BUDGET + SLACK + 1):  # answered within the budget
                sent = await a.request(
                    "message.send", conversation_id=room, client_msg_id="m2", content="2"
                )
                history = await b.request("messages.list", conversation_id=room)
                read = await b.request(
                    "message.read", conversation_id=room, message_id=sent["message"]["id"]
                )
            assert sent["created"] is True and sent["message"]["seq"] == 3
            assert [m["seq"] for m in history["messages"]] == [1, 2, 3]
            assert read["read_seq"] == 3
            private.restart()  # back, and empty
            await b.next_event("resync", timeout=15)
            assert gw.metric("gateway_resyncs_total") >= 1
            assert gw.metric("gateway_bus_reconnects_total") >= 1
            after = await b.request("messages.list", conversation_id=room)
            assert [m["seq"] for m in after["messages"]] == [1, 2, 3]
            assert (await b.request("conversations.list"))["total_unread"] == 0
            assert (await b.request("messages.list", conversation_id=room)) == {
                **after,
                "id": ANY_ID,
            }
            await a.request("message.send", conversation_id=room, client_msg_id="m3", content="3")
            news: list[int] = []
            while not news or news[-1] != 4:
                news.append((await b.next_event("message.new"))["message"]["seq"])
            assert news[-1] == 4
            await a.close()
            await b.close()


async def test_caches_left_stale_by_an_outage_are_repaired_when_redis_returns(
    tmp_path: Path,
) -> None:
    """Redis restarts from a snapshot taken before the outage: the caches it brings back miss
    the send, the delete and the read made meanwhile. They must not be served as truth: once
    Redis is back the gateway drops what its failed writes left stale, and reads refill it
    from the store."""
    with EmbeddedRedis() as private:
        setup = connect(private.url)
        ann, bob = uuid.uuid4(), uuid.uuid4()
        tokens = [await token_for(setup, ann), await token_for(setup, bob)]
        with gateways(private.url, tmp_path, 1, redis_timeout="1") as (gw,):
            a = await GatewayClient.connect(gw.url, tokens[0])
            b = await GatewayClient.connect(gw.url, tokens[1])
            created = await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
            room = created["conversation"]["id"]
            sent = [
                (
                    await a.request(
                        "message.send", conversation_id=room, client_msg_id=f"m{n}", content=f"{n}"
                    )
                )["message"]
                for n in range(2)
            ]
            history = await b.request("messages.list", conversation_id=room)
            assert [m["seq"] for m in history["messages"]] == [1, 2]  # cached from here on
            assert (await b.request("conversations.list"))["total_unread"] == 2
            assert (await b.request("conversation.unread", conversation_id=room))[
                "unread_count"
            ] == 2
            await setup.save()  # the snapshot Redis will come back with
            await setup.aclose()
            private.kill()
            third = (
                await a.request(
                    "message.send", conversation_id=room, client_msg_id="m2", content="2"
                )
            )["message"]
            await a.request("message.delete", conversation_id=room, message_id=sent[0]["id"])
            await b.request("message.read", conversation_id=room, message_id=third["id"])
            private.restart()  # the snapshot: every cache as it was before the outage
            await b.next_event("resync", timeout=15)

            async def repaired() -> bool:
                page = await b.request("messages.list", conversation_id=room)
                listed = await b.request("conversations.list")
                unread = await b.request("conversation.unread", conversation_id=room)
                return (
                    [m["seq"] for m in page["messages"]] == [2, 3]
                    and listed["conversations"][0]["last_message_text"] == "2"
                    and listed["total_unread"] == 0
                    and unread["unread_count"] == 0
                )

            deadline = asyncio.get_running_loop().time() + 5
            while not await repaired():
                assert asyncio.get_running_loop().time() < deadline, "stale caches still served"
                await asyncio.sleep(0.2)
            await a.close()
            await b.close()


class _AnyId:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)


ANY_ID = _AnyId()

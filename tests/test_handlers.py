"""Handlers and dispatch on recorded ports: what each frame returns, and how every failure is
answered. No sockets, no Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from caches import CacheUnavailable, PresenceStatus
from gateway.handlers import HandlerContext, Limits, Outcome, RequestBudget, dispatch
from gateway.protocol import Close
from gateway.state import ClientState
from gateway.store import NotAMember, Receipt, StoredMessage
from tests.fakes import client_state


class RecordingPresence:
    def __init__(self, alive: bool = True, hang: bool = False, fail: Exception | None = None):
        self.alive = alive
        self.hang = hang
        self.fail = fail
        self.renewed: list[str] = []

    async def renew(self, client: ClientState) -> bool:
        self.renewed.append(client.connection_id)
        return self.alive

    async def set_away(self, client: ClientState, away: bool) -> PresenceStatus:
        client.away = away
        return PresenceStatus.AWAY if away else PresenceStatus.ONLINE

    async def statuses(self, user_ids: Iterable[uuid.UUID]) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        if self.hang:
            await asyncio.Event().wait()
        return {str(u): {"user_id": u, "status": "offline", "last_seen": None} for u in user_ids}


class RecordingTyping:
    def __init__(self) -> None:
        self.started: list[uuid.UUID] = []

    async def start(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        self.started.append(conversation_id)
        return True

    async def stop(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        return False


class RecordingConversations:
    async def create(
        self, creator: uuid.UUID, kind: str, others: list[uuid.UUID], name: str
    ) -> tuple[dict[str, object], bool]:
        return {"id": "c1", "type": kind, "member_ids": [str(creator), *map(str, others)]}, True

    async def list_for(
        self, user_id: uuid.UUID, limit: int
    ) -> tuple[list[dict[str, object]], int | None]:
        return [], 0

    async def set_flag(
        self, user_id: uuid.UUID, conversation_id: uuid.UUID, flag: str, value: bool
    ) -> None:
        if flag not in ("pinned", "muted"):
            raise AssertionError(flag)

    async def members(self, conversation_id: uuid.UUID) -> tuple[uuid.UUID, ...]:
        return ()


class RecordingMessages:
    """Accepts every send once per client_msg_id; members are whoever the test says."""

    def __init__(self, members: set[uuid.UUID] | None = None) -> None:
        self.members = members
        self.sent: dict[str, StoredMessage] = {}
        self.receipts: list[tuple[uuid.UUID, bool]] = []

    def _check(self, client: ClientState) -> None:
        if self.members is not None and client.user_id not in self.members:
            raise NotAMember("not a member of this conversation")

    async def send(
        self,
        client: ClientState,
        conversation_id: uuid.UUID,
        client_msg_id: str,
        content: str,
        content_type: str,
    ) -> tuple[StoredMessage, bool]:
        self._check(client)
        if client_msg_id in self.sent:
            return self.sent[client_msg_id], False
        msg = StoredMessage(
            uuid.uuid4(), conversation_id, len(self.sent) + 1, client.user_id, client_msg_id,
            content, content_type, datetime.now(UTC),
        )  # fmt: skip
        self.sent[client_msg_id] = msg
        return msg, True

    async def receipt(
        self, client: ClientState, conversation_id: uuid.UUID, message_id: uuid.UUID, read: bool
    ) -> Receipt:
        self._check(client)
        self.receipts.append((message_id, read))
        return Receipt(conversation_id, client.user_id, 3, 3 if read else 0, True)

    async def unread(self, client: ClientState, conversation_id: uuid.UUID) -> int:
        self._check(client)
        return len(self.sent)

    async def delete(
        self, client: ClientState, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage:
        raise NotAMember("no such message in this conversation")

    async def history(
        self,
        conversation_id: uuid.UUID,
        limit: int,
        before_seq: int | None,
        after_seq: int | None,
    ) -> tuple[list[dict[str, object]], bool]:
        page = [m.as_wire() for m in self.sent.values()][:limit]
        return page, len(self.sent) > limit


class RecordingTopics:
    def __init__(self, memberships: set[tuple[uuid.UUID, uuid.UUID]] | None = None) -> None:
        self.memberships = memberships or set()
        self.watched: list[uuid.UUID] = []

    def is_member(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
        return (user_id, conversation_id) in self.memberships

    async def watch(self, client: ClientState, user_ids: Iterable[uuid.UUID]) -> None:
        if client.watching is None:
            client.watching = set()
        client.watching.update(user_ids)
        self.watched.extend(user_ids)

    def unwatch(self, client: ClientState, user_ids: Iterable[uuid.UUID]) -> None:
        for user_id in user_ids:
            if client.watching is not None:
                client.watching.discard(user_id)


def context(
    presence: RecordingPresence | None = None,
    topics: RecordingTopics | None = None,
    budget: float = 5.0,
    max_watched: int = 3,
    messages: RecordingMessages | None = None,
) -> HandlerContext:
    return HandlerContext(
        presence=presence or RecordingPresence(),
        typing=RecordingTyping(),
        conversations=RecordingConversations(),
        messages=messages or RecordingMessages(),
        topics=topics or RecordingTopics(),
        limits=Limits(max_watched=max_watched, max_message_bytes=16),
        metrics=Counter(),
        budget=RequestBudget(budget),
    )


def frame(frame_type: str, **fields: object) -> str:
    return orjson.dumps({"type": frame_type, **fields}).decode()


def reply(outcome: Outcome) -> dict[str, Any]:
    assert outcome.reply is not None
    frame: dict[str, Any] = orjson.loads(outcome.reply)
    return frame


async def test_heartbeat_acks_a_live_session() -> None:
    client = client_state()
    outcome = await dispatch(context(), client, '{"type":"heartbeat","id":"h1"}')
    assert reply(outcome) == {"type": "heartbeat_ack", "id": "h1"} and outcome.close is None


async def test_heartbeat_of_an_expired_session_says_so_then_closes_4002() -> None:
    outcome = await dispatch(
        context(RecordingPresence(alive=False)), client_state(), '{"type":"heartbeat"}'
    )
    assert reply(outcome) == {"type": "session.revoked", "reason": "session expired"}
    assert outcome.close is Close.SESSION_REVOKED


async def test_subscribe_watches_then_reads_and_refuses_beyond_the_limit() -> None:
    topics = RecordingTopics()
    ctx = context(topics=topics, max_watched=2)
    client = client_state()
    users = [uuid.uuid4() for _ in range(3)]
    raw = orjson.dumps(
        {"type": "presence.subscribe", "id": "s", "user_ids": [str(u) for u in users[:2]]}
    )
    answer = reply(await dispatch(ctx, client, raw.decode()))
    assert answer["type"] == "ack" and set(answer["presence"]) == {str(u) for u in users[:2]}
    assert topics.watched == users[:2]
    raw = orjson.dumps({"type": "presence.subscribe", "id": "t", "user_ids": [str(users[2])]})
    refused = reply(await dispatch(ctx, client, raw.decode()))
    assert refused["code"] == "too_many_watched" and refused["id"] == "t"
    assert client.watching == set(users[:2])


async def test_typing_only_for_members() -> None:
    client = client_state()
    room, other = uuid.uuid4(), uuid.uuid4()
    ctx = context(topics=RecordingTopics({(client.user_id, room)}))
    ok = reply(
        await dispatch(
            ctx, client, f'{{"type":"typing.start","id":"a","conversation_id":"{room}"}}'
        )
    )
    assert ok == {"type": "ack", "id": "a", "announced": True}
    silent = await dispatch(ctx, client, f'{{"type":"typing.start","conversation_id":"{room}"}}')
    assert silent == Outcome()
    refused = reply(
        await dispatch(
            ctx, client, f'{{"type":"typing.start","id":"b","conversation_id":"{other}"}}'
        )
    )
    assert refused["code"] == "forbidden"


async def test_direct_conversation_needs_exactly_one_other_member() -> None:
    client = client_state()
    raw = orjson.dumps(
        {
            "type": "conversation.create",
            "id": "c",
            "kind": "direct",
            "member_ids": [str(client.user_id)],
        }
    )
    assert reply(await dispatch(context(), client, raw.decode()))["code"] == "invalid_field"


async def test_auth_after_authentication_is_refused() -> None:
    answer = reply(
        await dispatch(context(), client_state(), '{"type":"auth","id":"x","token":"t"}')
    )
    assert answer["code"] == "already_authenticated" and answer["id"] == "x"


@pytest.mark.parametrize(
    ("failure", "code"),
    [(CacheUnavailable("down"), "unavailable"), (RuntimeError("bug"), "internal")],
)
async def test_failures_answered_with_stable_codes(failure: Exception, code: str) -> None:
    ctx = context(RecordingPresence(fail=failure))
    answer = reply(
        await dispatch(
            ctx,
            client_state(),
            f'{{"type":"presence.query","id":"q","user_ids":["{uuid.uuid4()}"]}}',
        )
    )
    assert (answer["code"], answer["id"]) == (code, "q")
    assert ctx.metrics[f"errors|{code}"] == 1  # counted by code


async def test_overdue_request_answered_unavailable_and_the_connection_goes_on() -> None:
    ctx = context(RecordingPresence(hang=True), budget=0.1)
    enforcer = asyncio.create_task(ctx.budget.enforce())
    try:
        started = time.monotonic()
        raw = f'{{"type":"presence.query","id":"slow","user_ids":["{uuid.uuid4()}"]}}'
        answer = reply(await dispatch(ctx, client_state(), raw))
        elapsed = time.monotonic() - started
        assert (answer["code"], answer["id"]) == ("unavailable", "slow")
        assert 0.1 <= elapsed < 1.0
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0)  # no cancellation left pending for the connection's task
    finally:
        enforcer.cancel()


async def test_a_real_cancellation_is_not_mistaken_for_the_budget() -> None:
    ctx = context(RecordingPresence(hang=True))
    raw = f'{{"type":"presence.query","id":"q","user_ids":["{uuid.uuid4()}"]}}'
    request = asyncio.create_task(dispatch(ctx, client_state(), raw))
    await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request


async def test_send_acks_the_stored_message_and_a_retry_gets_the_same() -> None:
    ctx = context()
    client = client_state()
    room = uuid.uuid4()
    send = {"conversation_id": str(room), "client_msg_id": "c1", "content": "hi"}
    first = reply(await dispatch(ctx, client, frame("message.send", id="s1", **send)))
    again = reply(await dispatch(ctx, client, frame("message.send", id="s2", **send)))
    assert first["created"] is True and again["created"] is False
    assert first["message"] == again["message"]
    assert first["message"]["content_type"] == "text" and first["message"]["seq"] == 1


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ('"content":"x","client_msg_id":""', "invalid_field", "client_msg_id"),
        ('"content":"' + "x" * 17 + '","client_msg_id":"c"', "invalid_field", "at most 16 bytes"),
        ('"content":"   ","client_msg_id":"c"', "invalid_field", "blank"),
        ('"content":"x","client_msg_id":"c","content_type":"exe"', "invalid_field", "content_type"),
        ('"content":7,"client_msg_id":"c"', "invalid_field", "content"),
    ],
)
async def test_send_refuses_bad_content_with_clear_errors(
    fields: str, code: str, message: str
) -> None:
    raw = f'{{"type":"message.send","id":"b","conversation_id":"{uuid.uuid4()}",{fields}}}'
    answer = reply(await dispatch(context(), client_state(), raw))
    assert answer["code"] == code and message in answer["message"]


async def test_non_members_are_refused_every_message_frame() -> None:
    ctx = context(messages=RecordingMessages(members=set()))
    room, message = uuid.uuid4(), uuid.uuid4()
    for raw in (
        f'{{"type":"message.send","id":"x","conversation_id":"{room}","client_msg_id":"c","content":"hi"}}',
        f'{{"type":"message.delivered","id":"x","conversation_id":"{room}","message_id":"{message}"}}',
        f'{{"type":"message.read","id":"x","conversation_id":"{room}","message_id":"{message}"}}',
        f'{{"type":"conversation.unread","id":"x","conversation_id":"{room}"}}',
    ):
        assert reply(await dispatch(ctx, client_state(), raw))["code"] == "forbidden"


async def test_receipts_ack_the_watermarks() -> None:
    messages = RecordingMessages()
    ctx = context(messages=messages)
    room, message = uuid.uuid4(), uuid.uuid4()
    raw = f'{{"type":"message.read","id":"r","conversation_id":"{room}","message_id":"{message}"}}'
    assert reply(await dispatch(ctx, client_state(), raw)) == {
        "type": "ack", "id": "r", "delivered_seq": 3, "read_seq": 3,
    }  # fmt: skip
    assert messages.receipts == [(message, True)]


async def test_history_for_members_only_and_one_direction_at_a_time() -> None:
    client = client_state()
    room = uuid.uuid4()
    member = context(topics=RecordingTopics({(client.user_id, room)}))
    answer = reply(
        await dispatch(member, client, frame("messages.list", id="h", conversation_id=str(room)))
    )
    assert answer == {"type": "ack", "id": "h", "messages": [], "has_more": False}
    both = frame("messages.list", id="h", conversation_id=str(room), before_seq=5, after_seq=1)
    assert "one or the other" in reply(await dispatch(member, client, both))["message"]
    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"after_seq": -1},
        {"before_seq": "5"},
        {"limit": True},
    ):
        raw = frame("messages.list", id="h", conversation_id=str(room), **bad)
        assert reply(await dispatch(member, client, raw))["code"] == "invalid_field"
    outsider = context()
    raw = frame("messages.list", id="h", conversation_id=str(room))
    assert reply(await dispatch(outsider, client, raw))["code"] == "forbidden"

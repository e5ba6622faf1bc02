# mypy: disable-error-code="arg-type"
"""The spec's id types everywhere: a UUID or its text is accepted by every cache method and
model, consistently; a malformed id is a ValueError naming the argument, never redis-py's."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from caches import (
    CachedConversation,
    CachedMessage,
    ConversationCache,
    MessageCache,
    PresenceCache,
    PresenceStatus,
    SessionCache,
    SessionData,
)
from caches.redis import RedisClient


@pytest.fixture
def redis(any_redis: RedisClient) -> RedisClient:
    return any_redis


async def test_messages_with_uuid_ids_or_their_text(redis: RedisClient) -> None:
    cache = MessageCache(redis)
    conversation, sender, message = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    msg = CachedMessage(
        id=message, conversation_id=str(conversation), sender_id=sender, content="hi"
    )
    assert (msg.id, msg.conversation_id, msg.sender_id) == (str(message), conversation, sender)
    await cache.set_conversation_messages(str(conversation), [], 60, complete=True)
    await cache.set_message(msg, 60)
    await cache.add_message_to_conversation(conversation, msg)
    listed = await cache.get_conversation_messages(str(conversation), 10)
    assert listed is not None and [m.id for m in listed] == [str(message)]
    assert (await cache.get_message(message)) == (await cache.get_message(str(message))) == msg
    await cache.update_message_status(message, "read")
    read = await cache.get_message(str(message))
    assert read is not None and read.status == "read"
    assert await cache.increment_unread_count(conversation, str(sender)) == 1
    assert await cache.get_unread_count(str(conversation), sender) == 1
    await cache.delete_message(message, conversation_id=str(conversation))
    assert await cache.get_message(message) is None
    assert await cache.get_conversation_messages(conversation, 10) == []


async def test_one_user_spelt_two_ways_is_one_user(redis: RedisClient) -> None:
    presence = PresenceCache(redis)
    user = uuid.uuid4()
    await presence.set_online(str(user).upper())
    assert await presence.is_online(user)
    assert await presence.get_online_users() == [user]
    assert (await presence.get_bulk_status([str(user), user])) == {user: presence_online()}
    await presence.set_offline(str(user))
    assert await presence.get_online_count() == 0


def presence_online() -> PresenceStatus:
    return PresenceStatus.ONLINE


async def test_conversations_and_sessions_take_either_form(redis: RedisClient) -> None:
    conversations = ConversationCache(redis)
    user, conversation, message = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    conv = CachedConversation(id=str(conversation), last_message_id=message)
    assert (conv.id, conv.last_message_id) == (conversation, str(message))
    await conversations.set_user_conversations(str(user), [conv], 60)
    await conversations.increment_unread(user, str(conversation))
    assert await conversations.get_total_unread_count(str(user)) == 1
    sessions = SessionCache(redis)
    await sessions.set("sess-a", SessionData(user_id=str(user)), 60)
    assert set(await sessions.get_user_sessions(str(user))) == {"sess-a"}


BAD = "not-a-uuid"


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda r: PresenceCache(r).get_status(BAD), "user_id"),
        (lambda r: PresenceCache(r).set_typing(BAD, uuid.uuid4()), "conversation_id"),
        (lambda r: PresenceCache(r).get_bulk_status([uuid.uuid4(), BAD]), "user_id"),
        (lambda r: MessageCache(r).get_unread_count(uuid.uuid4(), 42), "user_id"),
        (lambda r: MessageCache(r).get_message("has space"), "message_id"),
        (lambda r: ConversationCache(r).get_user_conversations(BAD), "user_id"),
        (lambda r: ConversationCache(r).reset_unread(uuid.uuid4(), BAD), "conversation_id"),
        (lambda r: SessionCache(r).get_user_sessions(BAD), "user_id"),
        (lambda r: SessionCache(r).get("{brace}"), "session_id"),
    ],
)
async def test_a_malformed_id_is_a_value_error_naming_it(
    redis: RedisClient, call: Callable[[RedisClient], Awaitable[object]], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        await call(redis)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (
            lambda: CachedMessage(id="m", conversation_id=BAD, sender_id=uuid.uuid4(), content=""),
            "conversation_id",
        ),
        (
            lambda: CachedMessage(id="m", conversation_id=uuid.uuid4(), sender_id=7, content=""),
            "sender_id",
        ),
        (
            lambda: CachedMessage(
                id="a b", conversation_id=uuid.uuid4(), sender_id=uuid.uuid4(), content=""
            ),
            "id",
        ),
        (lambda: CachedConversation(id=BAD), "id"),
        (lambda: SessionData(user_id=BAD), "user_id"),
    ],
)
def test_models_refuse_malformed_ids(build: Callable[[], object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        build()

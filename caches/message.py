"""Message cache: single messages, each conversation's newest messages, unread counters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from caches import keys
from caches._base import TTL, Call, Composed, Script, is_cluster, pipeline, run_idempotent, ttl_ms
from caches.conversation import LIST_WRITE, members_message_call
from caches.errors import translating
from caches.models import MESSAGE_STATUS_RANK, CachedMessage, decode, encode, to_ms
from caches.presence import TYPING_STOP, Announcement, Typist
from caches.redis import RedisClient

__all__ = ["DEFAULT_MESSAGE_TTL", "DEFAULT_UNREAD_TTL", "MESSAGES_PER_CONVERSATION", "MessageCache"]

DEFAULT_MESSAGE_TTL = timedelta(minutes=15)
MESSAGES_PER_CONVERSATION = 100

_MERGE = Script("messages_merge")
_READ = Script("list_read")
_STATUS = Script("message_status")
_UNREAD_RECORD = Script("unread_record")
_UNREAD_FILL = Script("unread_fill")
_MESSAGE_SET = Script("message_set")
_ANNOUNCE = Script("announce")
_WRITE_THROUGH = (_MESSAGE_SET, _MERGE, _UNREAD_RECORD, LIST_WRITE)
_SENT = {
    (stop, announce): Composed(
        *_WRITE_THROUGH, *((TYPING_STOP,) if stop else ()), *((_ANNOUNCE,) if announce else ())
    )
    for stop in (False, True)
    for announce in (False, True)
}
"""A sent message's whole write-through in one call (`record_sent`), by (the sender's typing
indicator cleared with it, the message announced last)."""

DEFAULT_UNREAD_TTL = timedelta(minutes=10)
# The state hash outlives every counter it describes (a counter left without its as-of seq
# would count a late write-through twice).
_UNREAD_STATE_TTL_MS = 24 * 3_600_000


def _status_rank(status: str) -> int:
    try:
        return MESSAGE_STATUS_RANK[status]
    except KeyError:
        raise ValueError(
            f"status must be one of {', '.join(MESSAGE_STATUS_RANK)}, got {status!r}"
        ) from None


def _merge_args(messages: list[CachedMessage]) -> list[Any]:
    args: list[Any] = []
    for msg in messages:
        keys.valid_id(msg.id, "message_id")
        args += [msg.id, _order(msg), _status_rank(msg.status), encode(msg)]
    return args


def _set_call(msg: CachedMessage, ms: int) -> Call:
    _status_rank(msg.status)
    return [keys.message(msg.id)], [encode(msg), ms]


def _unread_call(
    conversation_id: uuid.UUID | str, recipient_ids: Sequence[uuid.UUID | str], seq: int
) -> Call:
    users = [keys.uuid_text(u, "user_id") for u in recipient_ids]
    return (
        [keys.unread_state(conversation_id), *(keys.unread(conversation_id, u) for u in users)],
        [seq, _UNREAD_STATE_TTL_MS, *users],
    )


def _order(msg: CachedMessage) -> int:
    """The list's sort score: the conversation's seq when the message has one (messages sent in
    the same millisecond keep their order), else `created_at` in epoch ms (the spec's order)."""
    return msg.seq if msg.seq is not None else to_ms(msg.created_at)


@translating
class MessageCache:
    """The spec's MessageCache.

    A conversation's list is ordered by `seq` (messages that carry one, as the gateway's do) or
    else by `created_at`, and holds the newest `cap` messages. It is
    cache-aside safe: a read returns None (a miss) unless the list was loaded from the store with
    `set_conversation_messages` and can answer the whole request; an add to a list that was never
    loaded is kept for a concurrent load to merge with, but never served on its own.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        cap: int = MESSAGES_PER_CONVERSATION,
        list_ttl: TTL = DEFAULT_MESSAGE_TTL,
    ) -> None:
        self._redis = client
        self._cap = cap
        self._list_ttl_ms = ttl_ms(list_ttl)

    async def set_message(self, msg: CachedMessage, ttl: TTL = DEFAULT_MESSAGE_TTL) -> None:
        (key,), (body, ms) = _set_call(msg, ttl_ms(ttl))
        await self._redis.set(key, body, px=ms)

    async def get_message(self, message_id: str | uuid.UUID) -> CachedMessage | None:
        raw = await self._redis.get(keys.message(message_id))
        return None if raw is None else decode(CachedMessage, raw)

    async def add_message_to_conversation(
        self, conversation_id: uuid.UUID | str, msg: CachedMessage
    ) -> None:
        """Add a just-sent message to its conversation's list (one atomic step with the cap)."""
        if keys.valid_uuid(conversation_id, "conversation_id") != msg.conversation_id:
            raise ValueError("msg.conversation_id differs from conversation_id")
        add = self._merge_call(conversation_id, "add", [msg], False, self._list_ttl_ms)
        await _MERGE(self._redis, *add)

    async def set_conversation_messages(
        self,
        conversation_id: uuid.UUID | str,
        messages: list[CachedMessage],
        ttl: TTL = DEFAULT_MESSAGE_TTL,
        *,
        complete: bool = False,
    ) -> None:
        """Load the list from the store (cache-aside), merging with what is already cached.

        Args:
            messages: the newest messages of the conversation, in any order.
            complete: True when `messages` is the whole conversation (the store returned fewer
                than asked); reads for more than are held then hit instead of missing.
        """
        load = self._merge_call(conversation_id, "load", messages, complete, ttl_ms(ttl))
        await _MERGE(self._redis, *load)

    def _merge_call(
        self,
        conversation_id: uuid.UUID | str,
        mode: str,
        messages: list[CachedMessage],
        complete: bool,
        ms: int,
    ) -> Call:
        conversation = keys.valid_uuid(conversation_id, "conversation_id")
        for msg in messages:
            if msg.conversation_id != conversation:
                raise ValueError(f"message {msg.id} belongs to another conversation")
        return (
            [
                keys.conversation_messages(conversation_id),
                keys.conversation_message_bodies(conversation_id),
            ],
            [mode, self._cap, ms, "1" if complete else "0", *_merge_args(messages)],
        )

    async def get_conversation_messages(
        self, conversation_id: uuid.UUID | str, limit: int = 50
    ) -> list[CachedMessage] | None:
        """The newest `limit` messages, oldest first; None on a miss (load from the store)."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        raws = await _READ(
            self._redis,
            [
                keys.conversation_messages(conversation_id),
                keys.conversation_message_bodies(conversation_id),
            ],
            [limit, "asc"],
        )
        if raws is None or any(raw is None for raw in raws):
            return None
        return [decode(CachedMessage, raw) for raw in raws]

    async def update_message_status(
        self,
        message_id: str | uuid.UUID,
        status: str,
        *,
        conversation_id: uuid.UUID | str | None = None,
    ) -> bool:
        """Move a message's status forward (sent -> delivered -> read), never back.

        Visible through both `get_message` and `get_conversation_messages`. Passing the
        `conversation_id` saves a read: one round trip instead of two. Returns True when any
        cached copy changed.
        """
        rank = _status_rank(status)
        if conversation_id is None:
            conversation_id = await self._conversation_of(message_id)
        calls = [(_STATUS, [keys.message(message_id)], ["", status, rank])]
        if conversation_id is not None:
            bodies = keys.conversation_message_bodies(conversation_id)
            calls.append((_STATUS, [bodies], [keys.valid_id(message_id), status, rank]))
        results = await run_idempotent(self._redis, calls)
        return any(results)

    async def increment_unread_count(
        self, conversation_id: uuid.UUID | str, user_id: uuid.UUID | str
    ) -> int:
        return int(await self._redis.incr(keys.unread(conversation_id, user_id)))

    async def get_unread_count(
        self, conversation_id: uuid.UUID | str, user_id: uuid.UUID | str
    ) -> int:
        """The spec's call: 0 when no counter is cached (see `cached_unread_count`)."""
        cached = await self.cached_unread_count(conversation_id, user_id)
        return cached or 0

    async def evict_unread_count(
        self, conversation_id: uuid.UUID | str, user_id: uuid.UUID | str
    ) -> None:
        """Drop the counter with a plain DEL, which Redis takes even at its memory limit; unlike
        `reset_unread_count`, a fill already under way is not refused."""
        await self._redis.delete(keys.unread(conversation_id, user_id))

    async def reset_unread_count(
        self, conversation_id: uuid.UUID | str, user_id: uuid.UUID | str
    ) -> None:
        """The user read the conversation: the counter goes (the next read refills it), and a
        fill that read the store before this is refused."""
        state = keys.unread_state(conversation_id)
        pipe = pipeline(self._redis)
        pipe.delete(keys.unread(conversation_id, user_id))
        pipe.hincrby(state, "@v", 1)
        pipe.hdel(state, keys.uuid_text(user_id, "user_id"))
        pipe.pexpire(state, _UNREAD_STATE_TTL_MS)
        await pipe.execute()

    # Unread counters as a cache of the store's truth (last seq minus the read seq): a counter
    # exists only once filled from the store, and only exact changes touch it.

    async def cached_unread_count(
        self, conversation_id: uuid.UUID | str, user_id: uuid.UUID | str
    ) -> int | None:
        """The cached counter; None on a miss (never 0 for "not cached")."""
        raw = await self._redis.get(keys.unread(conversation_id, user_id))
        return None if raw is None else int(raw)

    async def unread_fill_version(self, conversation_id: uuid.UUID | str) -> int:
        """Take it *before* reading the store after a miss; pass it to `fill_unread_count`."""
        raw = await self._redis.hget(keys.unread_state(conversation_id), "@v")
        return int(raw) if raw is not None else 0

    async def fill_unread_count(
        self,
        conversation_id: uuid.UUID | str,
        user_id: uuid.UUID | str,
        count: int,
        as_of_seq: int,
        version: int,
        ttl: TTL = DEFAULT_UNREAD_TTL,
    ) -> bool:
        """Cache a count read from the store as of the conversation's `as_of_seq`; refused
        (False) when a message or a read was recorded since `version` was taken."""
        user = keys.uuid_text(user_id, "user_id")
        result = await _UNREAD_FILL(
            self._redis,
            [keys.unread_state(conversation_id), keys.unread(conversation_id, user)],
            [user, count, as_of_seq, str(version), ttl_ms(ttl), _UNREAD_STATE_TTL_MS],
        )
        return bool(result)

    async def record_unread(
        self,
        conversation_id: uuid.UUID | str,
        recipient_ids: Sequence[uuid.UUID | str],
        seq: int,
    ) -> None:
        """Message `seq` is unread for these members: their cached counters count it (once,
        whatever the order of arrival); uncached ones stay misses. One call for any number of
        members (a conversation's counters share a slot)."""
        await _UNREAD_RECORD(self._redis, *_unread_call(conversation_id, recipient_ids, seq))

    async def record_sent(
        self,
        msg: CachedMessage,
        member_ids: Sequence[uuid.UUID | str],
        *,
        typist: Typist | None = None,
        announce: Announcement | None = None,
    ) -> bool:
        """A message just sent, written through in one step: `set_message`,
        `add_message_to_conversation`, `record_unread` for every member but its sender,
        `ConversationCache.record_message_for_members` and, given the sender's `typist` there
        (`PresenceCache.typist`), `PresenceCache.stop_typing`. One script call on one server,
        whatever the member count; on a cluster, where these keys sit in many slots, the calls
        at once. (A step that fails on the server ends the script there: an indicator not
        cleared then expires with its TTL.)

        `announce`: on one server, published by the same call once everything is written (the
        message's event, one round trip for both). True when it was; False when the caller
        must publish it (a cluster: the writes span slots, so the event follows them)."""
        if msg.seq is None:
            raise ValueError("a sent message has its seq")
        texts = [keys.uuid_text(m, "member_id") for m in member_ids]
        sender = keys.uuid_text(msg.sender_id, "sender_id")
        recipients = [member for member in texts if member != sender]
        one_server = not is_cluster(self._redis)
        lists = members_message_call(
            texts,
            msg.conversation_id,
            msg.id,
            msg.content,
            msg.created_at,
            sender_id=msg.sender_id,
            seq=msg.seq,
            one_server=one_server,
        )
        stop = [] if typist is None else [(typist.stop_keys, typist.stop_args)]
        steps: list[tuple[Script, Call]] = [
            (_MESSAGE_SET, _set_call(msg, ttl_ms(DEFAULT_MESSAGE_TTL))),
            (_MERGE, self._merge_call(msg.conversation_id, "add", [msg], False, self._list_ttl_ms)),
            (_UNREAD_RECORD, _unread_call(msg.conversation_id, recipients, msg.seq)),
            *((LIST_WRITE, call) for call in lists),
            *((TYPING_STOP, call) for call in stop),
        ]
        if one_server:
            announcing = announce is not None
            calls = [call for _, call in steps]
            if announce is not None:
                calls.append(([announce.channel], announce.script_args()))
            await _SENT[bool(stop), announcing](self._redis, calls)
            return announcing
        await asyncio.gather(*(script(self._redis, *call) for script, call in steps))
        return False

    async def _conversation_of(self, message_id: str | uuid.UUID) -> uuid.UUID | None:
        """The conversation of a cached message (None when it is not cached)."""
        cached = await self.get_message(message_id)
        return cached.conversation_id if cached else None

    async def delete_message(
        self, message_id: str | uuid.UUID, *, conversation_id: uuid.UUID | str | None = None
    ) -> None:
        """Drop a message from the cache, and from its conversation's list when that is known."""
        if conversation_id is None:
            conversation_id = await self._conversation_of(message_id)
        pipe = pipeline(self._redis, transaction=False)
        mid = keys.valid_id(message_id, "message_id")
        pipe.delete(keys.message(mid))
        if conversation_id is not None:
            pipe.zrem(keys.conversation_messages(conversation_id), mid)
            pipe.hdel(keys.conversation_message_bodies(conversation_id), mid)
        await pipe.execute()

    async def delete_conversation_messages(self, conversation_id: uuid.UUID | str) -> None:
        await self._redis.delete(
            keys.conversation_messages(conversation_id),
            keys.conversation_message_bodies(conversation_id),
        )

"""Messaging: the store first (the system of record), then the caches, then the bus.

A send is committed to the store with its seq before anything else happens; the caches are
written through as the spec orders it (message, the conversation's list, every member's cached
conversation list and unread counters) and the event is published once. A cache or bus failure
is logged and never fails the send: the message is durable, and clients recover what a lost
event did not bring with `messages.list` after the last seq they saw.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

from caches import CachedMessage, ConversationCache, MessageCache
from caches.presence import Announcement, Typist
from gateway.bus.publisher import Publisher
from gateway.metrics import key
from gateway.protocol import events
from gateway.services.repair import CacheRepair
from gateway.services.side import all_quietly, attempt, quietly
from gateway.services.typing import TypingService
from gateway.state import ClientState
from gateway.store import Receipt, Store, StoredMessage

__all__ = ["MessageService"]

log = logging.getLogger(__name__)

_GAP_READ = 500
"""The most messages one gap fill reads; beyond, clients recover the rest from history."""

_HISTORY_HIT = key("cache_requests", "messages", "history", "hit")
_HISTORY_MISS = key("cache_requests", "messages", "history", "miss")
_UNREAD_HIT = key("cache_requests", "unread", "count", "hit")
_UNREAD_MISS = key("cache_requests", "unread", "count", "miss")


class MessageService:
    def __init__(
        self,
        *,
        store: Store,
        messages: MessageCache,
        conversations: ConversationCache,
        publisher: Publisher,
        members: Callable[[uuid.UUID], Awaitable[tuple[uuid.UUID, ...]]],
        typing: TypingService,
        side_budget: float,
        metrics: Counter[str],
        repair: CacheRepair,
    ) -> None:
        self._store = store
        self._messages = messages
        self._conversations = conversations
        self._publisher = publisher
        self._members = members
        self._typing = typing
        self._side_budget = side_budget
        self._metrics = metrics
        self._repair = repair

    async def send(
        self,
        client: ClientState,
        conversation_id: uuid.UUID,
        client_msg_id: str,
        content: str,
        content_type: str,
    ) -> tuple[StoredMessage, bool]:
        """Persist, write through, publish `message.new`; a retry returns the stored message.

        Raises:
            NotAMember / KeyConflict: from the store (membership is checked first).
        """
        msg, created = await self._store.send_message(
            conversation_id, client.user_id, client_msg_id, content, content_type
        )
        if created:
            self._metrics["messages_persisted"] += 1
            members = await self._members(conversation_id)
            frame = events.message_new(msg.as_wire())
            # The caches before the event (the spec's order): a member who fetches on
            # `message.new` finds the message cached. Where scripts reach the bus the event is
            # the write-through's last step, in its script call; the sender's typing stops in
            # that call too.
            typist = self._typing.stop_with_send(client, conversation_id)
            announced: bool | None = False
            if typist is None:  # scripts do not reach this bus: each step on its own
                steps: dict[str, Awaitable[object]] = {
                    "messaging write-through": self._write_through(msg, members, None, None),
                    "messaging typing cleanup": self._typing.stop(client, conversation_id),
                }
                failed = await all_quietly(steps, self._side_budget)
            else:
                announce = self._publisher.conversation_announcement(
                    conversation_id, frame, seq=msg.seq
                )
                announced = await quietly(
                    "messaging write-through",
                    self._write_through(msg, members, typist, announce),
                    self._side_budget,
                )
                failed = set() if announced is not None else {"messaging write-through"}
            if "messaging write-through" in failed:
                self._repair.history(conversation_id)
                self._repair.members(conversation_id, members)
            if not announced:  # also when unknown: a second delivery beats none
                await self._publish(conversation_id, frame, seq=msg.seq)
        return msg, created

    async def committed(
        self, conversation_id: uuid.UUID, first: int, last: int
    ) -> list[tuple[int, bytes]]:
        """The committed messages `first`..`last` as (seq, `message.new` frame), the frames
        their publish carries: what fills a gap in a conversation's delivery."""
        page, _ = await self._store.list_messages(
            conversation_id, min(last - first + 1, _GAP_READ), after_seq=first - 1
        )
        return [(m.seq, events.message_new(m.as_wire())) for m in page if m.seq <= last]

    async def history(
        self,
        conversation_id: uuid.UUID,
        limit: int,
        before_seq: int | None,
        after_seq: int | None,
    ) -> tuple[list[dict[str, object]], bool]:
        """A page of messages in seq order and whether more lie beyond it. The newest page is
        cache-aside (cache, else store then fill); pages by seq come from the store."""
        newest = before_seq is None and after_seq is None
        if newest:
            cached = await self._cached_page(conversation_id, limit)
            if cached is not None:
                self._metrics[_HISTORY_HIT] += 1
                return [_wire(m) for m in cached], bool(cached) and (cached[0].seq or 0) > 1
        self._metrics[_HISTORY_MISS] += 1
        page, more = await self._store.list_messages(
            conversation_id, limit, before_seq=before_seq, after_seq=after_seq
        )
        if newest:
            fill = self._messages.set_conversation_messages(
                conversation_id, [_cached(m) for m in page], complete=not more
            )
            await attempt("messaging history fill", fill, self._side_budget)
        return [m.as_wire() for m in page], more

    async def _cached_page(
        self, conversation_id: uuid.UUID, limit: int
    ) -> list[CachedMessage] | None:
        cached = await quietly(
            "history from the cache",
            self._messages.get_conversation_messages(conversation_id, limit),
            self._side_budget,
        )
        if cached is None or any(m.seq is None for m in cached):
            return None  # a miss, or a list some other writer filled without seqs
        return cached

    async def _write_through(
        self,
        msg: StoredMessage,
        members: tuple[uuid.UUID, ...],
        typist: Typist | None,
        announce: Announcement | None,
    ) -> bool:
        # One script call on one server, whatever the member count (on a cluster, one call
        # per slot, issued together: the auto-pipeline sends them in one round trip per node).
        # True when it published `announce` too.
        return await self._messages.record_sent(
            _cached(msg), members, typist=typist, announce=announce
        )

    async def unread(self, client: ClientState, conversation_id: uuid.UUID) -> int:
        """The member's unread count in one conversation: the cached counter, else the store's
        truth (which then fills the counter, unless a change came in meanwhile).

        Raises:
            NotAMember: not a member (from the store; a non-member never has a counter).
        """
        cached = await quietly(
            "unread from the cache",
            self._messages.cached_unread_count(conversation_id, client.user_id),
            self._side_budget,
        )
        if cached is not None:
            self._metrics[_UNREAD_HIT] += 1
            return cached
        self._metrics[_UNREAD_MISS] += 1
        version = await quietly(
            "unread fill version",
            self._messages.unread_fill_version(conversation_id),
            self._side_budget,
        )
        count, as_of = await self._store.unread(conversation_id, client.user_id)
        if version is not None:
            fill = self._messages.fill_unread_count(
                conversation_id, client.user_id, count, as_of, version
            )
            await attempt("messaging unread fill", fill, self._side_budget)
        return count

    async def receipt(
        self, client: ClientState, conversation_id: uuid.UUID, message_id: uuid.UUID, read: bool
    ) -> Receipt:
        """Move the reader's watermark (never backwards) and tell the conversation.

        Raises:
            NotAMember / NotFound: not a member; no such message in the conversation.
        """
        receipt, msg = await self._store.receipt(conversation_id, client.user_id, message_id, read)
        if not receipt.moved:
            return receipt
        status = "read" if read else "delivered"
        if read:
            frame = events.message_read(conversation_id, client.user_id, receipt.read_seq)
            reset = self._reset_unread(client, conversation_id, receipt.read_seq)
            if not await attempt("messaging unread reset", reset, self._side_budget):
                self._repair.members(conversation_id, [client.user_id])
        else:
            frame = events.message_status(conversation_id, msg.id, msg.seq, client.user_id, status)
        update = self._messages.update_message_status(
            msg.id, status, conversation_id=conversation_id
        )
        if not await attempt("messaging status", update, self._side_budget):
            self._repair.history(conversation_id, message=msg.id)
        await self._publish(conversation_id, frame)
        return receipt

    async def delete(
        self, client: ClientState, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage:
        """Delete from the store, invalidate both caches (the spec's order), tell the members.

        Raises:
            NotFound / NotAllowed: from the store.
        """
        msg = await self._store.delete_message(conversation_id, client.user_id, message_id)
        invalidate = asyncio.gather(
            self._messages.delete_message(message_id, conversation_id=conversation_id),
            self._messages.delete_conversation_messages(conversation_id),
        )
        if not await attempt("messaging delete invalidation", invalidate, self._side_budget):
            self._repair.history(conversation_id, message=message_id)
        frame = events.message_deleted(conversation_id, message_id, msg.seq)
        await self._publish(conversation_id, frame)
        return msg

    async def _publish(
        self, conversation_id: uuid.UUID, frame: bytes, seq: int | None = None
    ) -> None:
        """Tell the members; a message whose publish is lost is still read from the store by
        every instance's gap fill, and by clients from history."""
        publish = self._publisher.conversation(conversation_id, frame, seq=seq)
        await attempt("messaging publish", publish, self._side_budget)

    async def _reset_unread(
        self, client: ClientState, conversation_id: uuid.UUID, read_seq: int
    ) -> None:
        await asyncio.gather(
            self._messages.reset_unread_count(conversation_id, client.user_id),
            self._conversations.record_read(client.user_id, conversation_id, read_seq),
        )


def _cached(msg: StoredMessage) -> CachedMessage:
    return CachedMessage(
        id=str(msg.id),
        conversation_id=msg.conversation_id,
        sender_id=msg.sender_id,
        content=msg.content,
        content_type=msg.content_type,
        created_at=msg.created_at,
        seq=msg.seq,
        client_msg_id=msg.client_msg_id,
    )


def _wire(msg: CachedMessage) -> dict[str, object]:
    """A cached message as the store's `as_wire` spells it."""
    return {
        "id": uuid.UUID(msg.id),
        "conversation_id": msg.conversation_id,
        "seq": msg.seq,
        "sender_id": msg.sender_id,
        "client_msg_id": msg.client_msg_id,
        "content": msg.content,
        "content_type": msg.content_type,
        "created_at": msg.created_at,
    }

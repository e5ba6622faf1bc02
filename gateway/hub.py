"""The local registry: connections by user and by topic, and local delivery of bus messages.

A bus message is an envelope `<excluded user id>|<frame JSON>`: the frame was encoded once by
the instance that published it, is framed once here, and the same bytes go to every local
recipient. When one read from the bus carries several messages (under load), frames are queued
per connection and each connection gets one write for all of them: one syscall instead of one
per event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import orjson

from caches import keys
from gateway.connection import Connection
from gateway.protocol import Close, event, text_frame

__all__ = ["Hub", "envelope"]

log = logging.getLogger(__name__)

_CONVERSATION_PREFIX = b"ch:conversation:"
_PRESENCE_PREFIX = b"ch:presence:"
_USER_PREFIX = b"ch:user:"
_REVOCATIONS = keys.REVOCATIONS_CHANNEL.encode()


def envelope(frame: bytes, exclude: uuid.UUID | None = None) -> bytes:
    """What goes on the bus: the frame, and whose connections must not receive it."""
    return (str(exclude).encode() if exclude else b"") + b"|" + frame


class Hub:
    """Owns the process's connections; subscribes the bus on first interest, not after last."""

    def __init__(
        self,
        subscribe: Callable[[str], None],
        unsubscribe: Callable[[str], None],
    ) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[uuid.UUID, set[Connection]] = {}
        self.user_conversations: dict[uuid.UUID, set[uuid.UUID]] = {}
        self._topics: dict[bytes, set[Connection]] = {}
        self._outbox: dict[Connection, list[bytes]] = {}
        self._batched = False
        self.delivered = 0

    # Registry

    def add(self, conn: Connection, conversations: set[uuid.UUID]) -> None:
        """Register a connection; `conversations` are its user's, kept if it is the first here."""
        self.connections[conn.id] = conn
        peers = self.by_user.setdefault(conn.user_id, set())
        if not peers:
            self.user_conversations[conn.user_id] = conversations
        peers.add(conn)
        self.join(conn, keys.user_channel(conn.user_id))
        for conversation_id in self.user_conversations[conn.user_id]:
            self.join(conn, keys.conversation_channel(conversation_id))

    def remove(self, conn: Connection) -> bool:
        """Unregister; True when it was its user's last connection on this instance."""
        if self.connections.pop(conn.id, None) is None:
            return False
        self.leave(conn, keys.user_channel(conn.user_id))
        for conversation_id in self.user_conversations.get(conn.user_id, ()):
            self.leave(conn, keys.conversation_channel(conversation_id))
        for watched in conn.watching or ():
            self.leave(conn, keys.presence_channel(watched))
        peers = self.by_user.get(conn.user_id)
        if peers is not None:
            peers.discard(conn)
            if not peers:
                del self.by_user[conn.user_id]
                self.user_conversations.pop(conn.user_id, None)
                return True
        return False

    def join(self, conn: Connection, channel: str) -> None:
        key = channel.encode()
        members = self._topics.get(key)
        if members is None:
            members = self._topics[key] = set()
            self._subscribe(channel)
        members.add(conn)

    def leave(self, conn: Connection, channel: str) -> None:
        key = channel.encode()
        members = self._topics.get(key)
        if members is None:
            return
        members.discard(conn)
        if not members:
            del self._topics[key]
            self._unsubscribe(channel)

    def is_member(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
        return conversation_id in self.user_conversations.get(user_id, ())

    def add_membership(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
        """The user joined a conversation: its local connections now receive its events."""
        conversations = self.user_conversations.get(user_id)
        if conversations is None or conversation_id in conversations:
            return
        conversations.add(conversation_id)
        channel = keys.conversation_channel(conversation_id)
        for conn in self.by_user.get(user_id, ()):
            self.join(conn, channel)

    def all_connections(self) -> Iterator[Connection]:
        return iter(list(self.connections.values()))

    # Delivery

    def deliver(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Route the messages of one bus read to the local connections that want them."""
        self._batched = len(batch) > 1
        for channel, payload in batch:
            if channel.startswith(_CONVERSATION_PREFIX) or channel.startswith(_PRESENCE_PREFIX):
                self._forward(channel, payload)
            elif channel.startswith(_USER_PREFIX):
                self._user_event(channel, payload)
            elif channel == _REVOCATIONS:
                self._revoke(payload)
        if self._batched:
            self._flush()

    def _forward(self, channel: bytes, payload: bytes) -> None:
        members = self._topics.get(channel)
        if not members:
            return
        split = payload.find(b"|")
        if split < 0:
            log.warning("hub: dropped a malformed bus message on %s", channel[:80])
            return
        exclude = payload[:split]
        body = payload[split + 1 :]
        frame = text_frame(body)
        if not self._batched:
            sent = 0
            for conn in members:
                if not (exclude and conn.user_key == exclude):
                    sent += conn.send_compressed(body) if conn.deflate else conn.send_frame(frame)
            self.delivered += sent
            return
        outbox = self._outbox
        for conn in members:
            if exclude and conn.user_key == exclude:
                continue
            if conn.deflate:
                self.delivered += conn.send_compressed(body)
                continue
            queued = outbox.get(conn)
            if queued is None:
                outbox[conn] = [frame]
            else:
                queued.append(frame)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        sent = 0
        for conn, frames in outbox.items():
            if conn.send_frame(frames[0] if len(frames) == 1 else b"".join(frames)):
                sent += len(frames)
        self.delivered += sent

    def _user_event(self, channel: bytes, payload: bytes) -> None:
        split = payload.find(b"|")
        body = payload[split + 1 :]
        try:
            data = orjson.loads(body)
            if data.get("type") == "conversation.added":
                conversation = data["conversation"]
                conversation_id = uuid.UUID(conversation["id"])
                user_id = uuid.UUID(channel[len(_USER_PREFIX) + 1 : -1].decode())
                self.add_membership(user_id, conversation_id)
        except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
            log.warning("hub: malformed user event on %s", channel[:80])
            return
        self._forward(channel, payload)

    def _revoke(self, payload: bytes) -> None:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("hub: malformed revocation")
            return
        session_id, token_id = data.get("session_id"), data.get("token_id")
        notice = event("session.revoked", reason="session revoked or token blacklisted")
        for conn in self.all_connections():
            if (session_id and conn.session_id == session_id) or (
                token_id and conn.token_id == token_id
            ):
                conn.send(notice)
                conn.close(Close.SESSION_REVOKED, "session revoked")

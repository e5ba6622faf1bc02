"""The local registry: connections by user, session and topic, and local delivery of bus
messages.

A bus message is an envelope (`gateway.protocol.envelope`): the frame was encoded once by the
instance that published it, is framed once here, and the same bytes go to every local
recipient. When one batch from the bus carries several messages (under load), frames are
queued per connection and each connection gets one write for all of them: one syscall instead
of one per event.

Each channel the hub joins is registered with what it is for (its members, and for a user's
channel the user), so routing never parses a channel name.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping

from caches import keys
from gateway.bus import Bus
from gateway.metrics import Latency
from gateway.protocol import Close, envelope, events
from gateway.protocol.envelope import Revocation
from gateway.protocol.ids import parse_uuid
from gateway.realtime.connection import Connection
from gateway.state import ClientState
from gateway.tasks import Spawn, detached

__all__ = ["Hub"]

log = logging.getLogger(__name__)

Recover = Callable[[uuid.UUID, int, int], Awaitable[list[tuple[int, bytes]]]]
"""(conversation, first seq, last seq) -> the committed messages in that range, as (seq,
`message.new` frame): what fills a gap in delivery."""

_FILLED_REMEMBERED = 1000
_ADMISSION_READ = 1000
"""The most messages read for a member admitted to a conversation announced moments ago."""


class _Topic:
    __slots__ = ("admitting", "filled", "held", "members", "next_seq", "timer", "user")

    def __init__(self, user: uuid.UUID | None) -> None:
        self.members: set[Connection] = set()
        self.user = user
        """Set on a user's own channel: control messages there apply to this user."""
        self.next_seq: int | None = None
        """A conversation's next message seq to deliver (known from the first one seen)."""
        self.held: dict[int, tuple[bytes, bytes]] | None = None
        """Messages that arrived ahead of `next_seq`: seq -> (exclude, frame)."""
        self.timer: asyncio.TimerHandle | None = None
        """The end of the current hold (None while none runs, or while a gap is being read)."""
        self.filled: set[int] = set()
        """Seqs delivered from the store to fill a gap: their late bus copies are dropped."""
        self.admitting: list[tuple[uuid.UUID, bytes, bytes]] | None = None
        """Users whose `conversation.added` (exclude, frame) waits for this new subscription to
        be confirmed; meanwhile the conversation's messages are held (see `Hub._admit`)."""


# One entry per connection: the connection itself while it is its key's only one (the common
# case; no container at all), a list once a key has several.
_Index = dict[str, "Connection | list[Connection]"]


def _index(index: _Index, key: str, conn: Connection) -> None:
    found = index.get(key)
    if found is None:
        index[key] = conn
    elif isinstance(found, list):
        found.append(conn)
    else:
        index[key] = [found, conn]


def _unindex(index: _Index, key: str, conn: Connection) -> None:
    found = index.get(key)
    if found is conn:
        del index[key]
    elif isinstance(found, list) and conn in found:
        found.remove(conn)
        if len(found) == 1:
            index[key] = found[0]


def _indexed(index: _Index, key: str | None) -> list[Connection]:
    found = index.get(key) if key is not None else None
    if found is None:
        return []
    return list(found) if isinstance(found, list) else [found]


class Hub:
    """Owns the process's connections; subscribes the bus on first interest, not after last."""

    def __init__(
        self, bus: Bus, budget: float, hold: float = 0.25, *, spawn: Spawn = detached
    ) -> None:
        """`spawn`: starts the reads that fill a gap (in the serving task group)."""
        self._bus = bus
        self._spawn = spawn
        self._budget = budget
        self._hold = hold
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[uuid.UUID, set[Connection]] = {}
        self.user_conversations: dict[uuid.UUID, set[uuid.UUID]] = {}
        self._by_session: _Index = {}
        self._by_token: _Index = {}
        self._topics: dict[bytes, _Topic] = {}
        self._revocations = keys.REVOCATIONS_CHANNEL.encode()
        self._outbox: dict[Connection, list[bytes]] = {}
        self._batched = False
        self.delivered = 0
        self.frames_out: Counter[str] = Counter()
        """Frames handed to local connections, by frame type."""
        self.fanout = Latency("fanout", "From a bus batch's arrival to its frames' socket writes")
        self.on_revocation: Callable[[Revocation], None] | None = None
        """Told of every revocation heard, whether or not a local connection uses it."""
        self.recover: Recover | None = None
        """Reads committed messages when a seq is still missing after `hold`; without it, held
        messages are released as they are (clients recover the gap from history)."""
        bus.subscribe(keys.REVOCATIONS_CHANNEL)

    # Registry

    def add(self, conn: Connection) -> str | None:
        """Register a connection. For its user's first connection here, the user's channel to
        have confirmed before reading the memberships (`set_memberships`); else None."""
        client = conn.client
        self.connections[conn.id] = conn
        _index(self._by_session, client.session_id, conn)
        _index(self._by_token, client.token_id, conn)
        peers = self.by_user.setdefault(conn.user_id, set())
        first = not peers
        if first:
            # Memberships announced from now on land here, before the store is read.
            self.user_conversations[conn.user_id] = set()
        peers.add(conn)
        channel = keys.user_channel(conn.user_id)
        self._join(conn, channel, user=conn.user_id)
        for conversation_id in self.user_conversations[conn.user_id]:
            self._join(conn, keys.conversation_channel(conversation_id))
        return channel if first else None

    def reindex(self, conn: Connection, session_id: str, token_id: str) -> None:
        """The connection carries on under another token (a refresh): revocations of the new
        session or token reach it, those of the old ones no longer do."""
        client = conn.client
        _unindex(self._by_session, client.session_id, conn)
        _unindex(self._by_token, client.token_id, conn)
        client.session_id, client.token_id = session_id, token_id
        _index(self._by_session, session_id, conn)
        _index(self._by_token, token_id, conn)

    async def confirmed(self, channel: str, timeout: float | None = None) -> None:
        """Once the server acknowledged the subscription (within `timeout`, default the
        budget)."""
        await self._bus.confirmed([channel], self._budget if timeout is None else timeout)

    async def join_created(self, user_ids: Iterable[uuid.UUID], conversation_id: uuid.UUID) -> None:
        """Members of a conversation created on this instance: their local connections receive
        its events from when this returns (the subscription confirmed, within the budget), so a
        first message sent at once reaches them whichever instance it is sent from."""
        for user_id in user_ids:
            self.add_membership(user_id, conversation_id)
        channel = keys.conversation_channel(conversation_id)
        if channel.encode() not in self._topics:
            return
        try:
            # A quarter of the budget, as the request's other side steps: a slow Redis must not
            # turn a created conversation into an `unavailable` answer (and a retry, a twin).
            await self.confirmed(channel, self._budget / 4)
        except TimeoutError:  # Redis slow: the first live events may be missed, not the history
            log.warning("hub: subscription to new conversation %s not confirmed", conversation_id)

    def set_memberships(self, user_id: uuid.UUID, conversations: Mapping[uuid.UUID, int]) -> None:
        """The user's conversations, as read from the store after its channel was confirmed."""
        for conversation_id, last_seq in conversations.items():
            self.add_membership(user_id, conversation_id, last_seq)

    def remove(self, conn: Connection) -> bool:
        """Unregister; True when it was its user's last connection on this instance."""
        if self.connections.pop(conn.id, None) is None:
            return False
        client = conn.client
        _unindex(self._by_session, client.session_id, conn)
        _unindex(self._by_token, client.token_id, conn)
        self._leave(conn, keys.user_channel(conn.user_id))
        for conversation_id in self.user_conversations.get(conn.user_id, ()):
            self._leave(conn, keys.conversation_channel(conversation_id))
        for watched in client.watching or ():
            self._leave(conn, keys.presence_channel(watched))
        peers = self.by_user.get(conn.user_id)
        if peers is not None:
            peers.discard(conn)
            if not peers:
                del self.by_user[conn.user_id]
                self.user_conversations.pop(conn.user_id, None)
                return True
        return False

    def _join(self, conn: Connection, channel: str, user: uuid.UUID | None = None) -> None:
        key = channel.encode()
        topic = self._topics.get(key)
        if topic is None:
            topic = self._topics[key] = _Topic(user)
            self._bus.subscribe(channel)
        topic.members.add(conn)

    def _leave(self, conn: Connection, channel: str) -> None:
        key = channel.encode()
        topic = self._topics.get(key)
        if topic is None:
            return
        topic.members.discard(conn)
        if not topic.members and topic.admitting is None:
            del self._topics[key]
            self._bus.unsubscribe(channel)

    def broadcast(self, payload: bytes) -> None:
        """Send one server frame to every local connection (encoded and framed once)."""
        _send_each(self.all_connections(), payload)

    def send_to_topics(self, channels: Iterable[bytes], payload: bytes) -> None:
        """Send one server frame to every local connection on any of `channels`, once each."""
        reached: set[Connection] = set()
        for channel in channels:
            topic = self._topics.get(channel)
            if topic is not None:
                reached.update(topic.members)
        _send_each(reached, payload)

    def all_connections(self) -> Iterator[Connection]:
        return iter(list(self.connections.values()))

    def user_connections(self, user_id: uuid.UUID) -> int:
        return len(self.by_user.get(user_id, ()))

    def session_connections(self, session_id: str) -> int:
        return len(_indexed(self._by_session, session_id))

    def clients(self) -> Iterator[ClientState]:
        return (conn.client for conn in list(self.connections.values()))

    # What handlers see (the topics port)

    def is_member(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
        return conversation_id in self.user_conversations.get(user_id, ())

    def add_membership(
        self, user_id: uuid.UUID, conversation_id: uuid.UUID, last_seq: int = 0
    ) -> None:
        """The user joined a conversation: its local connections now receive its events.

        `last_seq` is the conversation's last committed seq when the caller read it (0 for a
        new one): the first message this instance delivers for it is the next one, so a
        message that overtakes its predecessor is held even on a freshly joined channel."""
        conversations = self.user_conversations.get(user_id)
        if conversations is None or conversation_id in conversations:
            return
        conversations.add(conversation_id)
        channel = keys.conversation_channel(conversation_id)
        for conn in self.by_user.get(user_id, ()):
            self._join(conn, channel)
        topic = self._topics.get(channel.encode())
        if topic is not None and topic.next_seq is None:
            topic.next_seq = last_seq + 1

    async def watch(self, client: ClientState, user_ids: Iterable[uuid.UUID]) -> None:
        conn = self.connections.get(client.connection_id)
        if conn is None:
            return
        if client.watching is None:
            client.watching = set()
        channels = []
        for user_id in user_ids:
            channel = keys.presence_channel(user_id)
            channels.append(channel)
            if user_id not in client.watching:
                client.watching.add(user_id)
                self._join(conn, channel)
        if channels:
            await self._bus.confirmed(channels, self._budget)

    def unwatch(self, client: ClientState, user_ids: Iterable[uuid.UUID]) -> None:
        conn = self.connections.get(client.connection_id)
        for user_id in user_ids:
            if client.watching is not None and user_id in client.watching:
                client.watching.discard(user_id)
                if conn is not None:
                    self._leave(conn, keys.presence_channel(user_id))

    # Delivery

    def deliver(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Route the messages of one bus batch to the local connections that want them."""
        started = time.monotonic()
        self._batched = len(batch) > 1
        for channel, payload in batch:
            topic = self._topics.get(channel)
            if topic is not None:
                self._forward(topic, channel, payload)
            elif channel == self._revocations:
                self._revoke(payload)
        if self._batched:
            self._flush()
        self.fanout.observe(time.monotonic() - started)

    def _forward(self, topic: _Topic, channel: bytes, payload: bytes) -> None:
        try:
            message = envelope.unpack(payload)
        except ValueError:
            log.warning("hub: dropped a malformed bus message on %s", channel[:80])
            return
        if message.join is not None and topic.user is not None:
            if self._admit(topic.user, message.join, message.exclude, message.frame):
                return
        if not message.frame:
            return
        if message.seq is not None:
            self._in_order(topic, channel, message.seq, message.exclude, message.frame)
        else:
            self._send(topic, message.exclude, message.frame)

    def _in_order(
        self, topic: _Topic, channel: bytes, seq: int, exclude: bytes, body: bytes
    ) -> None:
        """Deliver a conversation's messages in seq order: two instances that commit seq 5 and
        6 at the same moment may publish 6 first; 6 is then held until 5 arrives, or for
        `hold` seconds at most, when 5 is read from the store (`recover`)."""
        expected = topic.next_seq
        if (expected is None or seq <= expected) and (
            topic.admitting is None or (expected is not None and seq < expected)
        ):  # first seen, in order, or a late one (and no member waiting to be admitted)
            if seq in topic.filled:  # already delivered from the store
                topic.filled.discard(seq)
                return
            self._send(topic, exclude, body)
            if expected is None or seq == expected:
                topic.next_seq = seq + 1
                self._release_ready(topic)
            return
        if topic.held is None:
            topic.held = {}
            if topic.admitting is None:  # an admission starts the hold when it ends
                self._start_hold(topic, channel)
        topic.held[seq] = (exclude, body)

    # Joining a conversation announced on the bus

    def _admit(
        self, user: uuid.UUID, conversation: uuid.UUID, exclude: bytes, frame: bytes
    ) -> bool:
        """A new conversation announced on the user's channel (its `join`). This instance may
        only now subscribe to it, and its first messages may be published before that: the
        user's connections get `conversation.added` and its messages once the subscription is
        confirmed and what was committed before it has been read from the store, in seq order,
        each once. Messages arriving meanwhile are held. False when the user already had it."""
        conversations = self.user_conversations.get(user)
        if conversations is None or conversation in conversations:
            return False
        conversations.add(conversation)
        channel = keys.conversation_channel(conversation)
        key = channel.encode()
        topic = self._topics.get(key)
        if topic is None:
            topic = self._topics[key] = _Topic(None)
            self._bus.subscribe(channel)
        if topic.admitting is None:
            topic.admitting = []
            self._spawn(self._admitted(topic, channel, conversation))
        topic.admitting.append((user, exclude, frame))
        return True

    async def _admitted(self, topic: _Topic, channel: str, conversation: uuid.UUID) -> None:
        found: list[tuple[int, bytes]] = []
        try:
            async with asyncio.timeout(self._budget):
                await self._bus.confirmed([channel], self._budget)
                if self.recover is not None:
                    found = await self.recover(conversation, 1, _ADMISSION_READ)
        except Exception as exc:  # Redis or the store down: live from now, history for the rest
            log.warning("hub: joined %s without what came before: %r", conversation, exc)
        waiting, topic.admitting = topic.admitting or [], None
        self._batched = False  # a task, not a bus batch: write at once
        if topic.next_seq is None:
            topic.next_seq = 1  # a conversation announced by its creation starts at seq 1
        delivered = topic.next_seq  # below it, existing members had them from the bus
        held = topic.held if topic.held is not None else {}
        for seq, body in found:
            if seq >= delivered and seq not in held:
                held[seq] = (b"", body)
                topic.filled.add(seq)
        topic.held = held or None
        earlier = [body for seq, body in found if seq < delivered]
        for user, exclude, frame in waiting:
            conns = self.by_user.get(user)
            if not conns or conversation not in self.user_conversations.get(user, ()):
                continue
            if frame:
                self._send_to(conns, exclude, frame)
            for body in earlier:
                self._send_to(conns, b"", body)
            for conn in conns:
                self._join(conn, channel)
        self._release_ready(topic)
        key = channel.encode()
        if topic.held:  # a gap beyond what the store had yet: the usual hold, then a fill
            self._start_hold(topic, key)
        if not topic.members and self._topics.get(key) is topic:
            _stop_hold(topic)
            del self._topics[key]
            self._bus.unsubscribe(channel)

    def _start_hold(self, topic: _Topic, channel: bytes) -> None:
        if topic.timer is None:
            loop = asyncio.get_running_loop()
            topic.timer = loop.call_later(self._hold, self._hold_ended, topic, channel)

    def _release_ready(self, topic: _Topic) -> None:
        held = topic.held
        while held and topic.next_seq in held:
            exclude, body = held.pop(topic.next_seq)
            self._send(topic, exclude, body)
            topic.next_seq += 1
        if held is not None and not held:
            topic.held = None
            _stop_hold(topic)

    def _hold_ended(self, topic: _Topic, channel: bytes) -> None:
        """A seq is still missing: its publish is late (a slow instance) or lost. The store
        has it (seqs are published only once committed), so it is read and the gap filled in
        order; the held messages wait for that read, within the request budget."""
        topic.timer = None
        if not topic.held or topic.next_seq is None:
            return
        conversation = _conversation_in(channel)
        if self.recover is None or conversation is None:
            self._release_all(topic)
            return
        held, first = topic.held, topic.next_seq
        last = next(seq for seq in range(max(held) - 1, first - 1, -1) if seq not in held)
        self._spawn(self._fill(topic, channel, conversation, first, last))

    async def _fill(
        self, topic: _Topic, channel: bytes, conversation: uuid.UUID, first: int, last: int
    ) -> None:
        assert self.recover is not None
        try:
            async with asyncio.timeout(self._budget):
                found = await self.recover(conversation, first, last)
        except Exception as exc:  # the store is down too: release what is held, out of order
            log.warning("hub: could not fill seqs %d-%d of %s: %s", first, last, conversation, exc)
            self._release_all(topic)
            return
        self._batched = False  # a task, not a bus batch: write at once
        held = topic.held
        if held is not None and topic.next_seq is not None:
            for seq, body in found:
                if seq >= topic.next_seq and seq not in held:
                    held[seq] = (b"", body)
                    topic.filled.add(seq)
            if len(topic.filled) > _FILLED_REMEMBERED:  # late copies that never came
                topic.filled = set(sorted(topic.filled)[-_FILLED_REMEMBERED:])
            self._release_ready(topic)
        if not topic.held:
            return
        if topic.next_seq is not None and topic.next_seq <= first:  # the store lacks it too
            self._release_all(topic)
        else:  # held since the read began, behind another gap: a hold of their own
            self._start_hold(topic, channel)

    def _release_all(self, topic: _Topic) -> None:
        held, topic.held = topic.held, None
        _stop_hold(topic)
        if not held:
            return
        self._batched = False  # a timer, not a bus batch: write at once
        for seq in sorted(held):
            exclude, body = held[seq]
            self._send(topic, exclude, body)
        topic.next_seq = max(held) + 1

    def _send(self, topic: _Topic, exclude: bytes, body: bytes) -> None:
        if not self._batched:
            self._send_to(topic.members, exclude, body)
            return
        self.frames_out[events.frame_type(body)] += len(topic.members)
        frame = events.text_frame(body)
        outbox = self._outbox
        for conn in topic.members:
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

    def _send_to(self, conns: Collection[Connection], exclude: bytes, body: bytes) -> None:
        """One frame to `conns` at once (not queued for a batch's flush), framed once."""
        self.frames_out[events.frame_type(body)] += len(conns)
        frame = events.text_frame(body)
        sent = 0
        for conn in conns:
            if not (exclude and conn.user_key == exclude):
                sent += conn.send_compressed(body) if conn.deflate else conn.send_frame(frame)
        self.delivered += sent

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        sent = 0
        for conn, frames in outbox.items():
            if conn.send_frame(frames[0] if len(frames) == 1 else b"".join(frames)):
                sent += len(frames)
        self.delivered += sent

    def _revoke(self, payload: bytes) -> None:
        try:
            revocation = Revocation.from_json(payload)
        except ValueError as exc:
            log.warning("hub: %s", exc)
            return
        if self.on_revocation is not None:
            self.on_revocation(revocation)
        affected = {
            *_indexed(self._by_session, revocation.session_id),
            *_indexed(self._by_token, revocation.token_id),
        }
        if not affected:
            return
        log.info(
            "revoked: %d local connections closed",
            len(affected),
            extra={"event": "revocation", "connections": len(affected)},
        )
        notice = events.session_revoked()
        for conn in affected:
            conn.send(notice)
            conn.close(Close.SESSION_REVOKED, "session revoked")


_CONVERSATION_CHANNEL = keys.conversation_channel(uuid.UUID(int=0)).encode()[: -len("0" * 36) - 1]


def _conversation_in(channel: bytes) -> uuid.UUID | None:
    """The conversation a channel carries (only conversations' events have seqs)."""
    if not channel.startswith(_CONVERSATION_CHANNEL):
        return None
    try:
        return parse_uuid(channel[len(_CONVERSATION_CHANNEL) : -1].decode())
    except ValueError:
        return None


def _stop_hold(topic: _Topic) -> None:
    if topic.timer is not None:
        topic.timer.cancel()
        topic.timer = None


def _send_each(connections: Iterable[Connection], payload: bytes) -> None:
    """One server frame to each of `connections`, framed once."""
    frame = events.text_frame(payload)
    for conn in connections:
        if conn.deflate:
            conn.send_compressed(payload)
        else:
            conn.send_frame(frame)

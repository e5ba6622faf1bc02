"""Properties, not just cases.

A state machine over presence with two instances on a real Redis: connections come and go,
heartbeat, turn away and back, and an instance crashes (its record lapses and the other claims
its leases). After every step each user's status equals what the live connections say (online
while any is active, away while all are away, offline with none), and every transition is
reported exactly once, by the step that caused it.

The store's unread count equals the conversation's last seq minus the member's read seq,
whatever the order of sends and reads.

Fuzzers: the frame decoder answers anything with a frame or a ProtocolError, the bus envelope
with an envelope or a ValueError; nothing else escapes. Random HTTP requests and bytes at a real
instance's port each get an answer or a close, and the instance keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from caches import InstanceLiveness, PresenceCache, PresenceStatus, PresenceTransition, keys
from caches.redis import connect
from gateway.protocol import envelope
from gateway.protocol.codes import ProtocolError
from gateway.protocol.frames import decode
from gateway.store import SqliteStore
from tests.gateways import gateways
from tests.http_get import http_get

_T = TypeVar("_T")
USERS = [uuid.UUID(int=n + 1) for n in range(3)]
INSTANCES = ["gw-a", "gw-b"]
LEASE = 60.0


def _status(active: list[bool]) -> PresenceStatus:
    if not active:
        return PresenceStatus.OFFLINE
    return PresenceStatus.ONLINE if any(active) else PresenceStatus.AWAY


async def _awaited(step: Awaitable[_T]) -> _T:
    return await step


class PresenceMachine(RuleBasedStateMachine):
    """The model: live connections, each (user, instance, active)."""

    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.conns: dict[str, tuple[uuid.UUID, str, bool]] = {}
        self.ids = itertools.count()

    def run(self, step: Awaitable[_T]) -> _T:
        return self.runner.run(_awaited(step))

    @initialize()
    def start(self) -> None:
        self.redis = connect(self.redis_url)
        self.run(self.redis.flushdb())
        self.presence = PresenceCache(self.redis)
        self.liveness = {name: InstanceLiveness(self.redis, name) for name in INSTANCES}

    def teardown(self) -> None:
        if hasattr(self, "redis"):
            self.run(self.redis.aclose())
        self.runner.close()

    def _expect(self, user: uuid.UUID, before: PresenceStatus, transition: Any) -> None:
        after = self._modelled(user)
        wanted = PresenceTransition.NONE if after is before else _TRANSITION[after]
        assert transition is wanted, (user, before, after, transition)

    def _modelled(self, user: uuid.UUID) -> PresenceStatus:
        return _status([active for u, _, active in self.conns.values() if u == user])

    @rule(user=st.sampled_from(USERS), instance=st.sampled_from(INSTANCES))
    def connect(self, user: uuid.UUID, instance: str) -> None:
        before = self._modelled(user)
        conn = f"{instance}.c{next(self.ids)}"
        self.conns[conn] = (user, instance, True)
        update = self.run(self.presence.renew(user, conn, LEASE))
        self.run(self.liveness[instance].hold([(user, conn)]))
        self._expect(user, before, update.transition)

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        if not self.conns:
            return
        conn = data.draw(st.sampled_from(sorted(self.conns)))
        user, _, active = self.conns[conn]
        before = self._modelled(user)
        update = self.run(self.presence.renew(user, conn, LEASE, away=not active))
        self._expect(user, before, update.transition)

    @rule(data=st.data(), away=st.booleans())
    def set_away(self, data: st.DataObject, away: bool) -> None:
        if not self.conns:
            return
        conn = data.draw(st.sampled_from(sorted(self.conns)))
        user, instance, _ = self.conns[conn]
        before = self._modelled(user)
        self.conns[conn] = (user, instance, not away)
        update = self.run(self.presence.set_away(user, conn, away, LEASE))
        self._expect(user, before, update.transition)

    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        if not self.conns:
            return
        conn = data.draw(st.sampled_from(sorted(self.conns)))
        user, instance, _ = self.conns[conn]
        before = self._modelled(user)
        del self.conns[conn]
        update = self.run(self.presence.disconnect(user, conn, grace=None))
        self.run(self.liveness[instance].release([(user, conn)]))
        self._expect(user, before, update.transition)

    @rule(instance=st.sampled_from(INSTANCES))
    def crash(self, instance: str) -> None:
        """The instance dies: its record lapses, the other claims its leases and ends them."""
        other = next(i for i in INSTANCES if i != instance)
        gone = {c: v for c, v in self.conns.items() if v[1] == instance}
        befores = {u: self._modelled(u) for u, _, _ in gone.values()}
        for conn in gone:
            del self.conns[conn]
        self.run(self.redis.delete(keys.instance_alive(instance)))
        leases = self.run(self.liveness[other].claim(instance)) or []
        assert sorted(leases) == sorted((u, c) for c, (u, _, _) in gone.items())
        updates = self.run(self.presence.disconnect_many(leases, grace=None))
        reported: dict[uuid.UUID, list[PresenceTransition]] = {}
        for update in updates:
            if update.transition is not PresenceTransition.NONE:
                reported.setdefault(update.user_id, []).append(update.transition)
        for user, before in befores.items():
            after = self._modelled(user)
            wanted = [] if after is before else [_TRANSITION[after]]
            assert reported.get(user, []) == wanted, (user, before, after, reported)

    @invariant()
    def presence_equals_live_connections(self) -> None:
        if not hasattr(self, "presence"):
            return
        for user in USERS:
            assert self.run(self.presence.get_status(user)) is self._modelled(user), user


_TRANSITION = {
    PresenceStatus.ONLINE: PresenceTransition.WENT_ONLINE,
    PresenceStatus.AWAY: PresenceTransition.WENT_AWAY,
    PresenceStatus.OFFLINE: PresenceTransition.WENT_OFFLINE,
}


def test_presence_follows_the_live_connections(redis_url: str) -> None:
    PresenceMachine.redis_url = redis_url
    machine = PresenceMachine.TestCase
    machine.settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine().runTest()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.tuples(st.sampled_from(["send", "read"]), st.integers(0, 2)), max_size=25))
def test_unread_is_last_seq_minus_read_seq(tmp_path: Path, steps: list[tuple[str, int]]) -> None:
    async def scenario() -> None:
        store = await SqliteStore(str(tmp_path / f"{uuid.uuid4()}.sqlite3")).open()
        try:
            users = [uuid.uuid4() for _ in range(3)]
            conversation, _ = await store.create_conversation("group", users[0], users[1:], "g")
            last, read = 0, dict.fromkeys(users, 0)
            last_id: uuid.UUID | None = None
            for index, (kind, who) in enumerate(steps):
                user = users[who]
                if kind == "send":
                    message, _ = await store.send_message(
                        conversation.id, user, f"k{index}", "text", "text"
                    )
                    last, last_id = message.seq, message.id
                    read[user] = last  # a sender has read their own message
                elif last_id is not None:
                    await store.receipt(conversation.id, user, last_id, True)
                    read[user] = last
                for member in users:
                    count, _ = await store.unread(conversation.id, member)
                    assert count == last - read[member], (member, steps[: index + 1])
        finally:
            await store.close()

    asyncio.run(scenario())


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=512),
        st.text(max_size=512),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats()
            | st.text(max_size=40),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        ["type", "id", "conversation_id", "user_ids", "content", "limit"]
                    )
                    | st.text(max_size=10),
                    children,
                    max_size=5,
                )
            ),
            max_leaves=12,
        ).map(orjson.dumps),
    )
)
def test_the_frame_decoder_answers_anything_with_a_frame_or_a_protocol_error(
    raw: str | bytes,
) -> None:
    try:
        decode(raw)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=256))
def test_the_bus_envelope_answers_anything_with_an_envelope_or_a_value_error(
    payload: bytes,
) -> None:
    try:
        envelope.unpack(payload)
    except ValueError:
        pass


_TOKEN = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30)
_REQUEST = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda method, path, headers, tail: (
            f"{method} {path} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers)
            + "\r\n"
        ).encode("utf-8", "surrogateescape")
        + tail,
        st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "BREW"]) | _TOKEN,
        st.sampled_from(["/ws", "/healthz", "/readyz", "/metrics", "/demo/", "/dev/token"])
        | st.text(max_size=80).map(lambda p: "/" + p),
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Origin",
                     "Sec-WebSocket-Version", "Authorization", "Content-Length"]
                )
                | _TOKEN,
                st.text(max_size=60),
            ),
            max_size=8,
        ),
        st.binary(max_size=100),
    ),
)  # fmt: skip


def test_the_http_listener_answers_anything_and_keeps_serving(
    redis_url: str, tmp_path: Path
) -> None:
    """Random request lines, headers and bytes at a real instance's port: each gets an answer
    or a close, and the instance keeps serving."""
    with gateways(redis_url, tmp_path, 1) as (gw,):
        port = int(gw.http.rsplit(":", 1)[1])

        @settings(max_examples=150, deadline=None)
        @given(request=_REQUEST)
        def one(request: bytes) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    sock.sendall(request)
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):  # an answer, then the close (or the close alone)
                        pass

        one()
        assert gw.proc.poll() is None
        assert http_get(f"{gw.http}/healthz")[0] == 200

"""Properties, not just cases.

A state machine over two instances on a real Redis and a real store: connections come and go,
heartbeat, turn away and back, type and stop, send and read in a group conversation; an
instance crashes (its record lapses and the other claims its leases); Redis is lost and comes
back empty (every instance re-asserts its leases). After every step each user's status equals
what the live connections say (online while any is active, away while all are away, offline
with none), every transition is reported exactly once by the step that caused it (a Redis loss
aside: its re-assertion is what the `resync` tells clients to re-query), the typers are those
who started and did not stop (each start and stop announced once), and each member's unread
count is the conversation's last seq minus their read seq.

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
    store_dir = Path()

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
        self.typing: set[uuid.UUID] = set()
        self.store = self.run(SqliteStore(str(self.store_dir / f"{uuid.uuid4()}.db")).open())
        self.room, _ = self.run(self.store.create_conversation("group", USERS[0], USERS[1:], "g"))
        self.last_seq = 0
        self.last_id: uuid.UUID | None = None
        self.read_seq = dict.fromkeys(USERS, 0)

    def teardown(self) -> None:
        if hasattr(self, "redis"):
            self.run(self.redis.aclose())
            self.run(self.store.close())
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

    @rule(user=st.sampled_from(USERS), start=st.booleans())
    def type_or_stop(self, user: uuid.UUID, start: bool) -> None:
        """A start is announced only when the user was not typing, a stop only when they were
        (the throttle aside: the gateway passes one; here a repeat start is never announced)."""
        conversation = self.room.id
        if start:
            announced = self.run(self.presence.set_typing(conversation, user, 60))
            assert announced is (user not in self.typing)
            self.typing.add(user)
        else:
            announced = self.run(self.presence.clear_typing(conversation, user))
            assert announced is (user in self.typing)
            self.typing.discard(user)

    @rule(user=st.sampled_from(USERS))
    def send(self, user: uuid.UUID) -> None:
        key = f"k{next(self.ids)}"
        message, created = self.run(self.store.send_message(self.room.id, user, key, "x", "text"))
        assert created and message.seq == self.last_seq + 1
        self.last_seq, self.last_id = message.seq, message.id
        self.read_seq[user] = message.seq  # a sender has read their own message

    @rule(user=st.sampled_from(USERS))
    def read(self, user: uuid.UUID) -> None:
        if self.last_id is None:
            return
        self.run(self.store.receipt(self.room.id, user, self.last_id, True))
        self.read_seq[user] = self.last_seq

    @rule()
    def redis_lost(self) -> None:
        """Redis restarted empty: every instance re-asserts its live connections' leases, as a
        reconnected bus makes it do; indicators are gone with it."""
        self.run(self.redis.flushdb())
        self.typing.clear()
        for instance in INSTANCES:
            mine = [(u, c, not a) for c, (u, i, a) in self.conns.items() if i == instance]
            if mine:
                self.run(self.presence.renew_many(mine, LEASE))
                self.run(self.liveness[instance].hold([(u, c) for u, c, _ in mine]))

    @invariant()
    def presence_equals_live_connections(self) -> None:
        if not hasattr(self, "presence"):
            return
        for user in USERS:
            assert self.run(self.presence.get_status(user)) is self._modelled(user), user

    @invariant()
    def typers_are_who_started_and_did_not_stop(self) -> None:
        if hasattr(self, "presence"):
            typers = self.run(self.presence.get_typing_users(self.room.id))
            assert sorted(typers) == sorted(self.typing)

    @invariant()
    def unread_is_last_seq_minus_read_seq(self) -> None:
        if not hasattr(self, "store"):
            return
        for user in USERS:
            count, _ = self.run(self.store.unread(self.room.id, user))
            assert count == self.last_seq - self.read_seq[user], (user, count)


_TRANSITION = {
    PresenceStatus.ONLINE: PresenceTransition.WENT_ONLINE,
    PresenceStatus.AWAY: PresenceTransition.WENT_AWAY,
    PresenceStatus.OFFLINE: PresenceTransition.WENT_OFFLINE,
}


def test_presence_typing_and_unread_follow_the_model(redis_url: str, tmp_path: Path) -> None:
    PresenceMachine.redis_url = redis_url
    PresenceMachine.store_dir = tmp_path
    machine = PresenceMachine.TestCase
    machine.settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine().runTest()


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

"""Presence cache: the spec's single-key API, typing indicators, and connection-aware presence.

The connection-aware layer is what a gateway uses: every connection holds a lease, a user is
online while any lease is live on any instance, away when every live connection reports away,
and offline once the last lease is gone. Each call runs one Lua script (one round trip) and
returns the transition it caused, so the caller announces every change exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from redis.asyncio.cluster import RedisCluster

from caches import keys
from caches._base import TTL, Script, is_cluster, pipeline, text, ttl_ms
from caches.errors import translating
from caches.memo import bounded_memo
from caches.models import (
    STATUS_BY_VALUE,
    PresenceStatus,
    PresenceTransition,
    from_ms,
    parse_time,
    to_iso,
)
from caches.redis import RedisClient

__all__ = [
    "DEFAULT_GRACE",
    "Announcement",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_PRESENCE_TTL",
    "DEFAULT_TYPING_TTL",
    "PresenceCache",
    "PresenceUpdate",
    "Typist",
]

DEFAULT_PRESENCE_TTL = timedelta(minutes=5)
DEFAULT_TYPING_TTL = timedelta(seconds=10)
DEFAULT_LEASE_TTL = timedelta(seconds=60)
DEFAULT_GRACE = timedelta(seconds=5)
# How long a user's lease bookkeeping outlives its last lease, so a sweep that runs late still
# sees who was online and announces the offline transition.
_RETENTION_MS = 3_600_000

_UPDATE = Script("presence_update")
# A batch's replies repeat the same few values: looked up, not constructed, per connection
# (as text or bytes, whether the client decodes replies or not; empty is no transition).
_TRANSITIONS: dict[str | bytes, PresenceTransition] = {
    **{t.value: t for t in PresenceTransition},
    **{t.value.encode(): t for t in PresenceTransition},
    "": PresenceTransition.NONE,
    b"": PresenceTransition.NONE,
}
_parse_seen = bounded_memo(parse_time, 1024)
_BATCH = 200
"""Connections per script call: a call blocks the server while it runs (~15 us a step)."""
_IN_FLIGHT = 32
"""Script calls in flight at once (a cluster client, one call per user, has a bounded pool)."""
_TYPING_START = Script("typing_start")
TYPING_STOP = Script("typing_stop")
"""Clears a typist's indicator (`stop_typing`); also a part of a sent message's write-through."""


class Announcement(NamedTuple):
    """A pub/sub channel and a message to publish in the same atomic step as the change. The
    channel goes to the script as a key: it must share the conversation's slot on a cluster (the
    gateway's conversation channels do: `ch:conversation:{<id>}`)."""

    channel: str
    message: bytes
    sharded: bool = False
    """SPUBLISH (heard by sharded subscribers, Redis 7+) instead of PUBLISH."""

    def script_args(self) -> list[str | bytes]:
        return [self.message, "1" if self.sharded else "0"]


class Typist(NamedTuple):
    """A user's typing in one conversation: the typing scripts' keys and arguments, built once
    (`PresenceCache.typist`)."""

    user: str
    start_keys: list[str]
    start_tail: tuple[str | int | bytes, ...]
    """The start script's arguments after the user and the time."""
    stop_keys: list[str]
    stop_args: list[str | bytes]


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """What one connection-aware call did to a user's presence."""

    user_id: uuid.UUID
    transition: PresenceTransition
    status: PresenceStatus
    next_check: datetime | None
    """When the user's earliest lease expires (None once offline)."""
    last_seen: datetime | None = None
    """Once offline: when the user was last connected."""


def _user_ids(user_ids: Sequence[uuid.UUID | str]) -> list[uuid.UUID]:
    return [u if type(u) is uuid.UUID else keys.valid_uuid(u, "user_id") for u in user_ids]


def _user(user_id: uuid.UUID | str) -> str:
    """The canonical text of a user id, as index members spell it."""
    return keys.uuid_text(user_id, "user_id")


def _now_ms() -> int:
    return int(time.time() * 1000)


@translating
class PresenceCache:
    """The spec's PresenceCache, plus connection leases (`connect` ... `sweep`)."""

    def __init__(self, client: RedisClient) -> None:
        self._redis = client
        self._cluster = is_cluster(client)

    # The spec's single-key API

    async def set_online(self, user_id: uuid.UUID | str, ttl: TTL = DEFAULT_PRESENCE_TTL) -> None:
        ms = ttl_ms(ttl)
        pipe = pipeline(self._redis)
        pipe.set(keys.presence(user_id), PresenceStatus.ONLINE.value, px=ms)
        pipe.zadd(self._online(user_id), {_user(user_id): _now_ms() + ms})
        await pipe.execute()

    async def extend_online(
        self, user_id: uuid.UUID | str, ttl: TTL = DEFAULT_PRESENCE_TTL
    ) -> bool:
        """Heartbeat: push the expiry to now + ttl; False when the user was not online."""
        ms = ttl_ms(ttl)
        pipe = pipeline(self._redis)
        pipe.pexpire(keys.presence(user_id), ms)
        pipe.zadd(self._online(user_id), {_user(user_id): _now_ms() + ms}, xx=True)
        extended, _ = await pipe.execute()
        if not extended:
            await self._redis.zrem(self._online(user_id), _user(user_id))
        return bool(extended)

    async def is_online(self, user_id: uuid.UUID | str) -> bool:
        """True while the user is connected (status online or away)."""
        return bool(await self._redis.exists(keys.presence(user_id)))

    async def get_status(self, user_id: uuid.UUID | str) -> PresenceStatus:
        raw = await self._redis.get(keys.presence(user_id))
        return STATUS_BY_VALUE.get(raw, PresenceStatus.OFFLINE)

    async def set_offline(self, user_id: uuid.UUID | str) -> None:
        """Force a user offline now (every lease dropped) and record last seen."""
        user = keys.uuid_text(user_id, "user_id")
        pipe = pipeline(self._redis)
        pipe.delete(
            keys.presence(user_id), keys.presence_leases(user_id), keys.presence_conns(user_id)
        )
        pipe.set(keys.lastseen(user_id), to_iso(from_ms(_now_ms())))
        pipe.zrem(self._online(user), user)
        pipe.zrem(self._deadlines(user), user)
        await pipe.execute()

    async def get_last_seen(self, user_id: uuid.UUID | str) -> datetime | None:
        raw = await self._redis.get(keys.lastseen(user_id))
        return parse_time(raw) if raw else None

    async def get_bulk_status(
        self, user_ids: Sequence[uuid.UUID | str]
    ) -> dict[uuid.UUID, PresenceStatus]:
        """Status of many users in one round trip (MGET)."""
        ids = _user_ids(user_ids)
        if not ids:
            return {}
        raws = await self._mget(keys.presence_many(ids))
        statuses = map(STATUS_BY_VALUE.get, raws, itertools.repeat(PresenceStatus.OFFLINE))
        return dict(zip(ids, statuses, strict=True))

    async def get_bulk_presence(
        self, user_ids: Sequence[uuid.UUID | str]
    ) -> dict[uuid.UUID, tuple[PresenceStatus, datetime | None]]:
        """Status and last seen of many users in one round trip; last seen is None while a
        user is online or away (it is when they were last connected)."""
        ids = _user_ids(user_ids)
        if not ids:
            return {}
        raws = await self._mget(keys.presence_many(ids) + [keys.lastseen(u) for u in ids])
        count = len(ids)
        offline = PresenceStatus.OFFLINE
        found = {}
        for i, u in enumerate(ids):
            status = STATUS_BY_VALUE.get(raws[i], offline)
            seen = raws[count + i]
            found[u] = (status, parse_time(seen) if seen and status is offline else None)
        return found

    async def _mget(self, names: list[str]) -> list[Any]:
        """One MGET; a cluster client splits it by slot."""
        if isinstance(self._redis, RedisCluster):
            return list(await self._redis.mget_nonatomic(names))
        return list(await self._redis.mget(names))

    async def get_online_users(self) -> list[uuid.UUID]:
        """Users whose presence has not expired, from the index (no key scan)."""
        now = f"({_now_ms()}"
        found = await asyncio.gather(
            *(self._redis.zrangebyscore(key, now, "+inf") for key in self._online_keys())
        )
        return [uuid.UUID(text(m)) for members in found for m in members]

    async def get_online_count(self) -> int:
        now = f"({_now_ms()}"
        counts = await asyncio.gather(
            *(self._redis.zcount(key, now, "+inf") for key in self._online_keys())
        )
        return sum(int(count) for count in counts)

    # The indexes: one key each on a standalone Redis, buckets in slots of their own on a
    # cluster (keys.PRESENCE_BUCKETS).

    def _online(self, user_id: uuid.UUID | str) -> str:
        if self._cluster:
            return keys.presence_online_bucket(keys.presence_bucket(user_id))
        return keys.PRESENCE_ONLINE

    def _deadlines(self, user_id: uuid.UUID | str) -> str:
        if self._cluster:
            return keys.presence_deadlines_bucket(keys.presence_bucket(user_id))
        return keys.PRESENCE_DEADLINES

    def _online_keys(self) -> list[str]:
        if self._cluster:
            return [keys.presence_online_bucket(b) for b in range(keys.PRESENCE_BUCKETS)]
        return [keys.PRESENCE_ONLINE]

    def _deadline_keys(self) -> list[str]:
        if self._cluster:
            return [keys.presence_deadlines_bucket(b) for b in range(keys.PRESENCE_BUCKETS)]
        return [keys.PRESENCE_DEADLINES]

    # Typing

    def typist(
        self,
        conversation_id: uuid.UUID | str,
        user_id: uuid.UUID | str,
        ttl: TTL = DEFAULT_TYPING_TTL,
        *,
        throttle: TTL | None = None,
        started: Announcement | None = None,
        stopped: Announcement | None = None,
    ) -> Typist:
        """One user's typing in one conversation as the typing scripts take it (`started` and
        `stopped`: what to publish when a start or a stop is announced). Built once, it serves
        every start and stop of that user there (`start_typing`, `stop_typing`)."""
        user = keys.uuid_text(user_id, "user_id")
        key = keys.typing(conversation_id, user_id)
        index = keys.typing_index(conversation_id)
        window = -1 if throttle is None else ttl_ms(throttle)
        start_tail: tuple[str | int | bytes, ...] = (ttl_ms(ttl), window)
        start_keys, stop_keys = [key, index], [key, index]
        stop_args: list[str | bytes] = [user]
        if started is not None:
            start_keys.append(started.channel)
            start_tail += tuple(started.script_args())
        if stopped is not None:
            stop_keys.append(stopped.channel)
            stop_args += stopped.script_args()
        return Typist(user, start_keys, start_tail, stop_keys, stop_args)

    async def set_typing(
        self,
        conversation_id: uuid.UUID | str,
        user_id: uuid.UUID | str,
        ttl: TTL = DEFAULT_TYPING_TTL,
        *,
        throttle: TTL | None = None,
        announce: Announcement | None = None,
    ) -> bool:
        """Mark the user typing for `ttl`; True when the change is to be announced.

        That is when the user was not typing, or (with `throttle`) when the last announcement is
        at least `throttle` old; a repeat inside the window only renews the TTL. With `announce`,
        the message is published in the same atomic step, only when announcing.
        """
        typist = self.typist(conversation_id, user_id, ttl, throttle=throttle, started=announce)
        return await self.start_typing(typist)

    async def start_typing(self, typist: Typist) -> bool:
        """`set_typing` for a prepared `typist`."""
        args = [typist.user, _now_ms(), *typist.start_tail]
        return bool(await _TYPING_START(self._redis, typist.start_keys, args))

    async def is_typing(self, conversation_id: uuid.UUID | str, user_id: uuid.UUID | str) -> bool:
        return bool(await self._redis.exists(keys.typing(conversation_id, user_id)))

    async def get_typing_users(self, conversation_id: uuid.UUID | str) -> list[uuid.UUID]:
        """Who is typing now (one round trip; an expired typer is never returned)."""
        members = await self._redis.zrangebyscore(
            keys.typing_index(conversation_id), f"({_now_ms()}", "+inf"
        )
        return [uuid.UUID(text(m)) for m in members]

    async def clear_typing(
        self,
        conversation_id: uuid.UUID | str,
        user_id: uuid.UUID | str,
        *,
        announce: Announcement | None = None,
    ) -> bool:
        """Stop typing; True when the user was typing (and `announce` was then published)."""
        return await self.stop_typing(self.typist(conversation_id, user_id, stopped=announce))

    async def stop_typing(self, typist: Typist) -> bool:
        """`clear_typing` for a prepared `typist`."""
        return bool(await TYPING_STOP(self._redis, typist.stop_keys, typist.stop_args))

    # Connection-aware presence

    async def renew(
        self,
        user_id: uuid.UUID | str,
        connection_id: str,
        lease: TTL = DEFAULT_LEASE_TTL,
        *,
        away: bool = False,
    ) -> PresenceUpdate:
        """Take or renew a connection's lease (re-creating it if Redis lost it).

        Called as `connect` when a connection comes up (WENT_ONLINE for the user's first) and as
        `heartbeat` after that; `away` is the connection's client-reported state.
        """
        return await self._step("renew", user_id, connection_id, ttl_ms(lease), 0, away)

    connect = renew
    heartbeat = renew

    async def renew_many(
        self,
        leases: Sequence[tuple[uuid.UUID | str, str, bool]],
        lease: TTL = DEFAULT_LEASE_TTL,
    ) -> list[PresenceUpdate]:
        """`renew` for many connections at once, each `(user_id, connection_id, away)`: one
        script call per `_BATCH` of them (one round trip for all), so heartbeats and connects
        arriving together share the work. The updates come back in the same order; a user
        twice in the batch is stepped twice, in order. On a cluster, one call per user."""
        items = [(keys.valid_uuid(u, "user_id"), c, away) for u, c, away in leases]
        return await self._steps("renew", items, ttl_ms(lease), 0)

    async def set_away(
        self,
        user_id: uuid.UUID | str,
        connection_id: str,
        away: bool,
        lease: TTL = DEFAULT_LEASE_TTL,
    ) -> PresenceUpdate:
        """Client-reported idle (`away=True`) or active; renews the lease too."""
        return await self.renew(user_id, connection_id, lease, away=away)

    async def disconnect(
        self, user_id: uuid.UUID | str, connection_id: str, grace: TTL | None = DEFAULT_GRACE
    ) -> PresenceUpdate:
        """A connection closed. The user's last one leaves a grace lease instead of going offline
        at once, so a reconnect inside the grace causes no offline/online flap; `expire` or
        `sweep` after the grace announces WENT_OFFLINE. `grace=None` goes offline at once."""
        grace_ms = 0 if grace is None else ttl_ms(grace)
        return await self._step("disconnect", user_id, connection_id, 0, grace_ms, False)

    async def disconnect_many(
        self,
        connections: Sequence[tuple[uuid.UUID | str, str]],
        grace: TTL | None = DEFAULT_GRACE,
    ) -> list[PresenceUpdate]:
        """`disconnect` for many connections at once, each `(user_id, connection_id)`, batched
        as `renew_many` is (a draining instance closes thousands in a few seconds)."""
        grace_ms = 0 if grace is None else ttl_ms(grace)
        items = [(keys.valid_uuid(u, "user_id"), c, False) for u, c in connections]
        return await self._steps("disconnect", items, 0, grace_ms)

    async def expire(self, user_id: uuid.UUID | str) -> PresenceUpdate:
        """Re-evaluate one user after leases may have lapsed (e.g. at the end of a grace)."""
        return await self._step("expire", user_id, "-", 0, 0, False)

    async def sweep(self, limit: int = 1000) -> list[PresenceUpdate]:
        """Settle users whose earliest lease has expired; returns the transitions it caused.

        Safe on every instance at once: each user's step is atomic, so a transition is returned
        by exactly one sweeper. On a cluster every bucket is read (at most `limit` users each
        time in all).
        """
        now = _now_ms()
        due: list[Any] = []
        for key in self._deadline_keys():
            due += await self._redis.zrangebyscore(key, "-inf", now, start=0, num=limit - len(due))
            if len(due) >= limit:
                break
        if not due:
            return []
        updates = await self._steps("expire", [(uuid.UUID(text(u)), "-", False) for u in due], 0, 0)
        return [u for u in updates if u.transition is not PresenceTransition.NONE]

    async def _step(
        self,
        op: str,
        user_id: uuid.UUID | str,
        connection_id: str,
        lease_ms: int,
        grace_ms: int,
        away: bool,
    ) -> PresenceUpdate:
        user = keys.valid_uuid(user_id, "user_id")
        return (await self._steps(op, [(user, connection_id, away)], lease_ms, grace_ms))[0]

    async def _steps(
        self, op: str, items: list[tuple[uuid.UUID, str, bool]], lease_ms: int, grace_ms: int
    ) -> list[PresenceUpdate]:
        now = _now_ms()
        if self._cluster:  # each user's keys in their own slot: a call each
            groups = [[item] for item in items]
        else:
            groups = [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]
        flat: list[Any] = []
        for start in range(0, len(groups), _IN_FLIGHT):
            calls = [
                _UPDATE(self._redis, *self._step_call(op, group, now, lease_ms, grace_ms))
                for group in groups[start : start + _IN_FLIGHT]
            ]
            if len(calls) == 1:  # the common case: no task for gather to wrap it in
                flat += await calls[0]
            else:
                flat += [value for replies in await asyncio.gather(*calls) for value in replies]
        steps = [(user, flat[i * 5 : i * 5 + 5]) for i, (user, _, _) in enumerate(items)]
        await self._index_on_cluster(steps)
        return [self._update(user, raw) for user, raw in steps]

    async def _index_on_cluster(self, steps: list[tuple[uuid.UUID, list[Any]]]) -> None:
        """On Redis Cluster the indexes' buckets live in other slots than a user's keys, so the
        step leaves them out and they follow here, from the expiries it returned: one
        pipeline, right after the step. (Not atomic with it: a step racing another instance's
        may leave an index entry stale for up to one lease; readers check the user's own keys.)"""
        if not self._cluster or not steps:
            return
        pipe = pipeline(self._redis, transaction=False)
        for user, raw in steps:
            member = str(user)
            earliest, last = int(raw[2]), int(raw[4])
            if last:
                pipe.zadd(self._online(user), {member: last})
                pipe.zadd(self._deadlines(user), {member: earliest})
            else:
                pipe.zrem(self._online(user), member)
                pipe.zrem(self._deadlines(user), member)
        await pipe.execute()

    def _step_call(
        self,
        op: str,
        items: Sequence[tuple[uuid.UUID, str, bool]],
        now: int,
        lease_ms: int,
        grace_ms: int,
    ) -> tuple[list[str], list[str | int]]:
        call_keys: list[str] = []
        args: list[str | int] = [
            op,
            now,
            to_iso(from_ms(now)),
            lease_ms,
            grace_ms,
            _RETENTION_MS,
            "0" if self._cluster else "1",
        ]
        for user, connection_id, away in items:
            user_text, user_keys = keys.presence_step(user)
            call_keys += user_keys
            args += [user_text, keys.valid_id(connection_id, "connection_id"), "w" if away else "a"]
        if not self._cluster:  # one slot for all: the indexes change in the same step
            call_keys += [keys.PRESENCE_ONLINE, keys.PRESENCE_DEADLINES]
        return call_keys, args

    @staticmethod
    def _update(user: uuid.UUID, raw: list[Any]) -> PresenceUpdate:
        transition, status, earliest, seen, _ = raw
        earliest_ms = int(earliest)
        return PresenceUpdate(
            user_id=user,
            transition=_TRANSITIONS[transition],
            status=STATUS_BY_VALUE[status],
            next_check=from_ms(earliest_ms) if earliest_ms else None,
            last_seen=_parse_seen(seen) if seen else None,
        )

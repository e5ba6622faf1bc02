"""Instance liveness: each gateway instance keeps a record in Redis, renewed every second, and
a list of the leases it holds. When a record lapses (the instance crashed, or was cut off for
longer than the record's TTL) any other instance claims that list and ends those leases, so
the dead instance's users are announced offline in seconds rather than when their client
leases run out.

The record's TTL is kept by Redis, so instances on hosts whose clocks disagree still agree on
who lapsed. A record and its lease list share a slot (the instance's hash tag): a claim is one
atomic step, and only one claimer gets the list.
"""

from __future__ import annotations

import asyncio
import uuid

from caches import keys
from caches._base import TTL, Script, text, ttl_ms
from caches.errors import translating
from caches.redis import RedisClient

__all__ = ["InstanceLiveness"]

_BEAT = Script("instance_beat")
_CLAIM = Script("instance_claim")

Lease = tuple[uuid.UUID, str]
"""A connection's lease: user id, connection id."""


@translating
class InstanceLiveness:
    """One instance's record and lease list, and the claim on other instances' lists."""

    def __init__(self, client: RedisClient, instance_id: str) -> None:
        self._redis = client
        self._instance = keys.valid_id(instance_id, "instance_id")

    async def beat(self, ttl: TTL) -> bool:
        """Renew this instance's record for `ttl`; False when it was missing (a first start,
        or it lapsed and another instance may have ended this one's leases)."""
        renewed, _ = await asyncio.gather(
            _BEAT(self._redis, [keys.instance_alive(self._instance)], [ttl_ms(ttl)]),
            self._redis.sadd(keys.INSTANCES, self._instance),
        )
        return bool(renewed)

    async def hold(self, leases: list[Lease]) -> None:
        """Note connections whose leases this instance holds."""
        if leases:
            await self._redis.sadd(keys.instance_leases(self._instance), *_members(leases))

    async def release(self, leases: list[Lease]) -> None:
        """Forget connections whose leases this instance gave up."""
        if leases:
            await self._redis.srem(keys.instance_leases(self._instance), *_members(leases))

    async def leave(self) -> None:
        """A clean stop, every lease given up: the record, the list and the entry go (the
        record and the list share a slot: one command)."""
        await asyncio.gather(
            self._redis.delete(
                keys.instance_alive(self._instance), keys.instance_leases(self._instance)
            ),
            self._redis.srem(keys.INSTANCES, self._instance),
        )

    async def others(self) -> list[str]:
        """Every other instance that kept a record."""
        found = await self._redis.smembers(keys.INSTANCES)
        return sorted(i for i in map(text, found) if i != self._instance)

    async def claim(self, instance_id: str) -> list[Lease] | None:
        """The leases of `instance_id` when its record lapsed, taken so that only this caller
        ends them; None while it is alive. An instance with nothing left is forgotten."""
        taken = await self._take(instance_id, even_if_alive=False)
        if taken is not None and not taken:
            await self._redis.srem(keys.INSTANCES, instance_id)
        return taken

    async def leftovers(self) -> list[Lease]:
        """At start: the leases a previous run of this instance (same id) left behind when it
        died; taken, for the caller to end."""
        return await self._take(self._instance, even_if_alive=True) or []

    async def _take(self, instance_id: str, *, even_if_alive: bool) -> list[Lease] | None:
        members = await _CLAIM(
            self._redis,
            [keys.instance_alive(instance_id), keys.instance_leases(instance_id)],
            ["1" if even_if_alive else "0"],
        )
        if members is None:
            return None
        return [_lease(text(member)) for member in members]


def _members(leases: list[Lease]) -> list[str]:
    """A lease list's members: "user-id connection-id"."""
    return [f"{user} {connection}" for user, connection in leases]


def _lease(member: str) -> Lease:
    user, _, connection = member.partition(" ")
    return uuid.UUID(user), connection

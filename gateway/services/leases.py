"""Lease steps that arrive together share one script call.

A drained instance's clients come back in a wave, its connections close in one, and heartbeats
cluster the same way: every connection taking, renewing or giving up its lease in the same loop
iteration joins one `renew_many` / `disconnect_many` call (one round trip, one reply to parse),
so the cost per step falls as the load rises instead of each one paying for its own command.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from caches import InstanceLiveness, PresenceCache, PresenceUpdate
from gateway.state import ClientState
from gateway.tasks import Spawn, detached

__all__ = ["LeaseSteps"]

_Run = Callable[[list[ClientState]], Awaitable[list[PresenceUpdate]]]


class _Batch:
    """Clients queued in this loop iteration, stepped together right after it."""

    def __init__(self, run: _Run, spawn: Spawn) -> None:
        self._run = run
        self._spawn = spawn
        self._waiting: list[tuple[ClientState, asyncio.Future[PresenceUpdate]]] = []

    def add(self, client: ClientState) -> asyncio.Future[PresenceUpdate]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PresenceUpdate] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((client, future))
        return future

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        self._spawn(self._step(batch))

    async def _step(self, batch: list[tuple[ClientState, asyncio.Future[PresenceUpdate]]]) -> None:
        try:
            updates = await self._run([client for client, _ in batch])
        except Exception as exc:  # each waiter answers for itself (unavailable, ...)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), update in zip(batch, updates, strict=True):
            if not future.done():  # its caller gave up waiting; the step stands all the same
                future.set_result(update)


class LeaseSteps:
    def __init__(
        self,
        *,
        presence: PresenceCache,
        liveness: InstanceLiveness,
        lease: float,
        grace: float,
        spawn: Spawn = detached,
    ) -> None:
        """`spawn`: starts each batch's script call (in the serving task group). Every batch
        also notes the leases in this instance's list (`liveness`), in the same round trip,
        so that another instance can end them if this one dies."""
        self._presence = presence
        self._liveness = liveness
        self._lease = lease
        self._grace = grace if grace > 0 else None  # `--grace 0`: offline at once
        self._renewals = _Batch(self.renew_now, spawn)
        self._disconnects = _Batch(self._disconnect_now, spawn)

    async def renew_now(self, clients: list[ClientState]) -> list[PresenceUpdate]:
        """Take or renew these clients' leases, at once."""
        updates, _ = await asyncio.gather(
            self._presence.renew_many(
                [(c.user_id, c.connection_id, c.away) for c in clients], self._lease
            ),
            self._liveness.hold([(c.user_id, c.connection_id) for c in clients]),
        )
        return updates

    async def _disconnect_now(self, clients: list[ClientState]) -> list[PresenceUpdate]:
        updates, _ = await asyncio.gather(
            self.end([(c.user_id, c.connection_id) for c in clients]),
            self._liveness.release([(c.user_id, c.connection_id) for c in clients]),
        )
        return updates

    def end(self, leases: list[tuple[uuid.UUID, str]]) -> Awaitable[list[PresenceUpdate]]:
        """Cut these leases to the grace (the user's last one) or end them."""
        return self._presence.disconnect_many(leases, self._grace)

    def renew(self, client: ClientState) -> asyncio.Future[PresenceUpdate]:
        """Take or renew the client's lease with whatever else renews in this iteration."""
        return self._renewals.add(client)

    def disconnect(self, client: ClientState) -> asyncio.Future[PresenceUpdate]:
        """Cut the client's lease to the grace with whatever else closes in this iteration."""
        return self._disconnects.add(client)

"""Lease renewals that arrive together share one script call.

A drained instance's clients come back in a wave, and heartbeats cluster the same way: every
connection renewing its lease in the same loop iteration joins one `renew_many` call (one round
trip, one reply to parse), so the cost per renewal falls as the load rises instead of each one
paying for its own command.
"""

from __future__ import annotations

import asyncio
import logging

from caches import PresenceCache, PresenceUpdate
from gateway.state import ClientState

__all__ = ["LeaseRenewals"]

log = logging.getLogger(__name__)


class LeaseRenewals:
    def __init__(self, presence: PresenceCache, lease: float) -> None:
        self._presence = presence
        self._lease = lease
        self._waiting: list[tuple[ClientState, asyncio.Future[PresenceUpdate]]] = []
        self._running: set[asyncio.Task[None]] = set()

    def renew(self, client: ClientState) -> asyncio.Future[PresenceUpdate]:
        """Take or renew the client's lease with whatever else renews in this iteration."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PresenceUpdate] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((client, future))
        return future

    def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._renew(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _renew(self, batch: list[tuple[ClientState, asyncio.Future[PresenceUpdate]]]) -> None:
        leases = [(c.user_id, c.connection_id, c.away) for c, _ in batch]
        try:
            updates = await self._presence.renew_many(leases, self._lease)
        except Exception as exc:  # each waiter answers for itself (unavailable, ...)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), update in zip(batch, updates, strict=True):
            if not future.done():  # its caller gave up waiting; the lease stands all the same
                future.set_result(update)

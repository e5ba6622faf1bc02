"""Group commit: writes that arrive while a batch commits share the next one.

One batch is in flight at a time; everything queued meanwhile goes into the next one: one hop to
the store's thread (SQLite) or one round trip (PostgreSQL: one call of `send_batch`). With one
write at a time this is a transaction per write; under load the hop or round trip, the lock and
the commit are paid once per batch instead of once per write, so the cost per write falls as
the load rises.

Batches are fair: writes are queued per owner (the user they are for) and a batch takes them
round-robin, at most `share` of one owner's, so one user's backlog of costly writes never
stands between another user's send and its commit for more than one batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "Outcome", "Work"]

_W = TypeVar("_W")

Work = Callable[[], Any]
"""A write the SQLite store runs on its thread."""
Outcome = tuple[bool, Any]
"""(True, result) or (False, the exception the write raised)."""


class GroupCommit(Generic[_W]):
    def __init__(
        self,
        run: Callable[[list[_W]], Awaitable[list[Outcome]]],
        *,
        max_batch: int = 512,
        share: int = 32,
    ) -> None:
        """`run` commits a batch of writes, each all-or-nothing, and reports each one's outcome
        in order; `max_batch` bounds how long the first write of a batch waits for the last,
        `share` what one owner adds to everyone's batch."""
        self._run = run
        self._max_batch = max_batch
        self._share = share
        self._queues: dict[Hashable, deque[tuple[_W, asyncio.Future[Any]]]] = {}
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, work: _W, owner: Hashable = None) -> Any:
        """Commit `work` in a coming batch; its result or error. `owner` (the user the write is
        for) decides its turn: owners take turns within a batch."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = deque()
        queue.append((work, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_all())
        return await future

    def _next_batch(self) -> list[tuple[_W, asyncio.Future[Any]]]:
        """Round-robin over the owners with writes queued, at most `share` of each; an owner
        with more left goes to the back of the line."""
        batch: list[tuple[_W, asyncio.Future[Any]]] = []
        for owner in list(self._queues):
            queue = self._queues.pop(owner)
            for _ in range(min(self._share, len(queue), self._max_batch - len(batch))):
                batch.append(queue.popleft())
            if queue:
                self._queues[owner] = queue
            if len(batch) >= self._max_batch:
                break
        return batch

    async def _commit_all(self) -> None:
        batch: list[tuple[_W, asyncio.Future[Any]]] = []
        try:
            while self._queues:
                batch = self._next_batch()
                try:
                    outcomes = await self._run([work for work, _ in batch])
                except Exception as exc:  # the batch as a whole failed: so did each write
                    outcomes = [(False, exc)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller gave up; the write stands all the same
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                batch = []
        finally:
            self._committer = None
            left = [pending for queue in self._queues.values() for pending in queue]
            for _, future in batch + left:  # cancelled mid-batch (shutdown): none hangs
                if not future.done():
                    future.cancel()
            self._queues = {}

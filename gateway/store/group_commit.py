"""Group commit: writes that arrive while a transaction commits share the next one.

One batch is in flight at a time; everything queued meanwhile goes into the next transaction in
one hop to the store's thread. With one write at a time this is a transaction per write, as
before; under load the hop, the lock and the commit are paid once per batch instead of once per
write, so the cost per write falls as the load rises.

Batches are fair: writes are queued per owner (the user they are for) and a batch takes them
round-robin, at most `_SHARE` of one owner's, so one user's backlog of costly writes never
stands between another user's send and its commit for more than one batch.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

__all__ = ["GroupCommit", "Outcome", "Work"]

_T = TypeVar("_T")

Work = Callable[[], Any]
Outcome = tuple[bool, Any]
"""(True, result) or (False, the exception the write raised)."""

_MAX_BATCH = 512
"""Writes per transaction: bounds how long the first write of a batch waits for the last."""

_SHARE = 32
"""One owner's writes per batch at most: bounds what one user adds to everyone's batch."""

_Pending = tuple[Work, "asyncio.Future[Any]"]


class GroupCommit:
    def __init__(
        self,
        on_thread: Callable[[Callable[[], list[Outcome]]], Awaitable[list[Outcome]]],
        transaction: Callable[[list[Work]], list[Outcome]],
    ) -> None:
        """`on_thread` runs a function on the store's thread; `transaction` runs a batch of
        writes in one transaction there, each all-or-nothing, and reports each one's outcome."""
        self._on_thread = on_thread
        self._transaction = transaction
        self._queues: dict[Hashable, deque[_Pending]] = {}
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, work: Callable[[], _T], owner: Hashable = None) -> _T:
        """Run `work` (on the store's thread) in a coming batch; its result or error. `owner`
        (the user the write is for) decides its turn: owners take turns within a batch."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = deque()
        queue.append((work, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_all())
        return await future

    def _next_batch(self) -> list[_Pending]:
        """Round-robin over the owners with writes queued, at most `_SHARE` of each; an owner
        with more left goes to the back of the line."""
        batch: list[_Pending] = []
        for owner in list(self._queues):
            queue = self._queues.pop(owner)
            for _ in range(min(_SHARE, len(queue), _MAX_BATCH - len(batch))):
                batch.append(queue.popleft())
            if queue:
                self._queues[owner] = queue
            if len(batch) >= _MAX_BATCH:
                break
        return batch

    async def _commit_all(self) -> None:
        batch: list[_Pending] = []
        try:
            while self._queues:
                batch = self._next_batch()
                works = [work for work, _ in batch]
                try:
                    outcomes = await self._on_thread(functools.partial(self._transaction, works))
                except Exception as exc:  # the transaction as a whole failed: so did each write
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

"""Group commit: writes that arrive while a transaction commits share the next one.

One batch is in flight at a time; everything queued meanwhile goes into the next transaction in
one hop to the store's thread. With one write at a time this is a transaction per write, as
before; under load the hop, the lock and the commit are paid once per batch instead of once per
write, so the cost per write falls as the load rises.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["GroupCommit", "Outcome", "Work"]

_T = TypeVar("_T")

Work = Callable[[], Any]
Outcome = tuple[bool, Any]
"""(True, result) or (False, the exception the write raised)."""

_MAX_BATCH = 512
"""Writes per transaction: bounds how long the first write of a batch waits for the last."""


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
        self._queue: list[tuple[Work, asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, work: Callable[[], _T]) -> _T:
        """Run `work` (on the store's thread) in the next batch; its result or error."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_all())
        return await future

    async def _commit_all(self) -> None:
        batch: list[tuple[Work, asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
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
        finally:
            self._committer = None
            for _, future in batch + self._queue:  # cancelled mid-batch (shutdown): none hangs
                if not future.done():
                    future.cancel()
            self._queue = []

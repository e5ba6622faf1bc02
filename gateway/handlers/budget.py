"""The time one client request may take, enforced for all requests by one clock.

A per-request timer would cost a timer handle (and asyncio.timeout's bookkeeping) on the
hottest path. Instead each request is noted when it starts, in start order, and one background
task cancels the requests that are overdue: O(1) per request, O(overdue) per tick. The handler
sees the cancellation at its current await; `dispatch` turns it into an `unavailable` answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["RequestBudget"]


class RequestBudget:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._running: dict[asyncio.Task[object], float] = {}
        self._overdue: set[asyncio.Task[object]] = set()

    def start(self) -> asyncio.Task[object]:
        """Note that the current task starts a request."""
        task: asyncio.Task[object] = asyncio.current_task()  # type: ignore[assignment]
        self._running[task] = self._clock()
        return task

    def is_overdue(self, task: asyncio.Task[object]) -> bool:
        """True when `task`'s cancellation came from this budget (answer `unavailable`)."""
        return task in self._overdue

    def finish(self, task: asyncio.Task[object]) -> None:
        """The request ended; an overdue one has its cancellation withdrawn, so the task (the
        client's connection) goes on."""
        self._running.pop(task, None)
        if task in self._overdue:
            self._overdue.discard(task)
            task.uncancel()

    def cancel_overdue(self) -> int:
        """Cancel every request started more than `seconds` ago; how many."""
        cutoff = self._clock() - self.seconds
        due = []
        for task, started in self._running.items():
            if started > cutoff:
                break  # start order: the rest are younger
            due.append(task)
        for task in due:
            del self._running[task]
            self._overdue.add(task)
            task.cancel()
        return len(due)

    async def enforce(self) -> None:
        """Run until cancelled (the owner's task group): overdue requests end within a tenth
        of the budget past it."""
        tick = max(self.seconds / 10, 0.01)
        while True:
            await asyncio.sleep(tick)
            self.cancel_overdue()

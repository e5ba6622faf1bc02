"""A connection's requests in flight while its next frames are read, answered in order.

A connection's frames were handled strictly in turn: a client with messages queued (an outbox
flushed after a reconnect, a burst of sends) waited a whole send, store and caches and bus, per
message, and no two of its sends ever shared a store batch. Sends now run several at once: the
receive loop starts each as a task and reads on. Their answers still go out in the order the
requests came, and their messages reach the store in that order (`gateway.state.Turn`), so a
client sees nothing it did not see before, only sooner. Any other frame first waits until the
sends before it are answered, then runs in turn, as before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.handlers import Outcome

__all__ = ["Extra", "Pipeline"]

DEPTH = 32
"""Requests of one connection in flight at most; the receive loop stops reading at this many
(a client sending faster is slowed by its own socket, and its frame rate limit still holds)."""

EXTRA = 32
"""Requests one instance runs beyond the one per connection it always ran: one connection's
worth. Unbounded, 200 connections with 32 sends each in flight swamped the event loop
(measured: Redis round trips of 0.2-0.9 s, thousands of sends answered `unavailable` past
their budget, a third of the messages persisted per second); at 128, a tree costing one more
Redis round trip per send still tipped over the same way. Bounded, a crowd of connections is
served as before, one request each, and a few busy ones get the rest: one hot conversation
(10 connections) persisted 1,922 messages/s at 32 against 2,152 at 128, where it was 888-1,178
with every connection's frames in turn."""


class Extra:
    """The instance's count of requests in flight beyond one per connection, and its bound."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int = EXTRA) -> None:
        self.limit = limit
        self.used = 0


class Pipeline:
    def __init__(self, answer: Callable[[Outcome], None], extra: Extra, depth: int = DEPTH) -> None:
        """`answer`: sends a finished request's outcome to the client (in request order);
        `extra`: shared by the instance's pipelines."""
        self._answer = answer
        self._extra = extra
        self._depth = depth
        self._running: deque[asyncio.Task[Outcome]] = deque()

    def start(self, request: Coroutine[Any, Any, Outcome]) -> None:
        """Run `request` now (when not `full`: the caller waits for room first); its answer
        goes out after those of the requests started before."""
        task = asyncio.create_task(request)
        if self._running:  # the connection's first in flight is never counted as extra
            self._extra.used += 1
        self._running.append(task)
        task.add_done_callback(self._answer_finished)

    @property
    def full(self) -> bool:
        """No more may start now: `depth` in flight, or the instance's extra all taken."""
        running = len(self._running)
        return running >= self._depth or (running > 0 and self._extra.used >= self._extra.limit)

    async def wait_for_room(self) -> None:
        """Until another may start (no longer `full`): the connection's oldest requests
        finish first, so at worst none of its own is left in flight."""
        while self.full:
            await asyncio.wait((self._running[0],))

    async def drain(self) -> None:
        """Until every request started is answered."""
        while self._running:
            await asyncio.wait(tuple(self._running))

    async def settle(self) -> None:
        """The connection is over: let the requests in flight finish (each is bounded by the
        request budget; a send's message is stored all the same), or cancel them when this
        task is cancelled itself."""
        try:
            await self.drain()
        finally:
            for task in self._running:
                task.cancel()

    def _answer_finished(self, _: asyncio.Task[Outcome]) -> None:
        # Answers leave in request order: a finished request waits behind an unfinished one.
        running = self._running
        while running and running[0].done():
            task = running.popleft()
            if running:  # the next becomes the first in flight, no longer an extra
                self._extra.used -= 1
            if not task.cancelled():
                self._answer(task.result())

"""Structured concurrency on anyio (asyncio and uvloop underneath): sibling coroutines run as
one unit, and every task the serving process starts belongs to a task group.

anyio's cancellation is level-triggered: a task inside a cancelled scope is cancelled again at
each of its awaits until it leaves the scope, so a cancellation that Python 3.11's
`asyncio.wait_for` (used by redis-py for socket writes) swallows is delivered again rather than
waited for forever, which the gateway used to hand-roll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = ["Spawn", "Spawner", "detached", "first_to_end"]

Spawn = Callable[[Coroutine[Any, Any, None]], None]
"""Starts a short job in its owner's task group."""

log = logging.getLogger(__name__)


async def first_to_end(*coros: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines until one ends; cancel the rest and wait for them; re-raise the
    first error (itself, not a group of one, so callers handle it as they would unwrapped).
    A cancellation of the caller propagates as such."""
    try:
        async with anyio.create_task_group() as group:
            for coro in coros:
                group.start_soon(_then_cancel, coro, group)
    except BaseExceptionGroup as errors:
        raise _first(errors) from None


async def _then_cancel(coro: Coroutine[Any, Any, None], group: TaskGroup) -> None:
    await coro
    group.cancel_scope.cancel()


def _first(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    found = errors.exceptions[0]
    return _first(found) if isinstance(found, BaseExceptionGroup) else found


class Spawner:
    """Starts short jobs (closing handshakes, gap fills, lease batches) in the serving task
    group while it is open; outside it (before the start, after the drain) a job is dropped,
    its coroutine closed."""

    def __init__(self) -> None:
        self.group: TaskGroup | None = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.group is None:
            coro.close()
            return
        self.group.start_soon(_awaited, coro)


async def _awaited(coro: Coroutine[Any, Any, None]) -> None:
    try:
        await coro
    except Exception:  # the job's edge: logged, never the end of the serving group
        log.exception("a background job failed")


_DETACHED: set[asyncio.Task[None]] = set()


def detached(coro: Coroutine[Any, Any, None]) -> None:
    """The `Spawn` of a component used outside a serving group (unit tests, the CLI): a task
    kept referenced until it ends. The serving process passes `Spawner.spawn` instead."""
    task = asyncio.get_running_loop().create_task(_awaited(coro))
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)

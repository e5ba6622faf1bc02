"""Running sibling coroutines as one unit of failure, and stopping tasks for sure."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ["cancel_and_wait", "first_to_end"]

_RECANCEL_AFTER = 0.5


async def first_to_end(*coros: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines until one ends; cancel and await the rest; re-raise its error.

    Unlike a 3.11 TaskGroup, a cancellation of the caller always propagates as such, even when
    a child fails at the same moment.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(tasks)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel the tasks and wait until every one has ended.

    Python 3.11's `asyncio.wait_for` (which redis-py uses for socket writes) can swallow a
    cancellation that lands as its inner call completes; a task that lost its cancellation that
    way is cancelled again rather than waited for forever. A cancellation of the caller while it
    waits is re-raised once the tasks have ended.
    """
    pending = {task for task in tasks if not task.done()}
    interrupted = False
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=_RECANCEL_AFTER)
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError

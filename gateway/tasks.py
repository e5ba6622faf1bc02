"""Running sibling coroutines as one unit of failure."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["first_to_end"]


async def first_to_end(*coros: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines until one ends; cancel and await the rest; re-raise its error.

    Unlike a 3.11 TaskGroup, a cancellation of the caller always propagates as such, even when
    a child fails at the same moment.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

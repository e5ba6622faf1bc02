"""The one bounded, logged side step: a Redis step that follows a committed store write (or
stands in for one), never the request's failure.

`quietly` is the helper; `attempt` and `all_quietly` are its two shapes (a step whose result
does not matter; several steps at once, for one round trip through the auto-pipeline).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from caches import CacheUnavailable

__all__ = ["all_quietly", "attempt", "quietly"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def quietly(
    what: str, work: Awaitable[_T], budget: float, *, level: int = logging.WARNING
) -> _T | None:
    """`work`'s result, or None when Redis failed or did not answer within `budget` (logged at
    `level`): the store has the truth, so a cache or bus step never fails the request."""
    try:
        async with asyncio.timeout(budget):
            return await work
    except (CacheUnavailable, TimeoutError) as exc:
        log.log(level, "%s skipped: Redis unavailable: %s", what, exc or "timeout")
        return None


async def _done(work: Awaitable[object]) -> bool:
    await work
    return True


async def attempt(what: str, work: Awaitable[object], budget: float) -> bool:
    """Whether Redis took a step whose result does not matter (the caller notes a failure for
    repair)."""
    return await quietly(what, _done(work), budget) is not None


async def all_quietly(steps: Mapping[str, Awaitable[object]], budget: float) -> set[str]:
    """Independent steps at once, under one deadline: issued together they share one round
    trip through the auto-pipeline. The names of the steps Redis did not take (each logged),
    for the caller to note for repair."""
    if len(steps) == 1:  # no gather (a task per step) for one
        ((what, work),) = steps.items()
        return set() if await attempt(what, work, budget) else {what}
    results = await quietly(
        ", ".join(steps), asyncio.gather(*steps.values(), return_exceptions=True), budget
    )
    if results is None:  # no answer within the budget: none is known to have been taken
        return set(steps)
    failed = set()
    for what, result in zip(steps, results, strict=True):
        if isinstance(result, CacheUnavailable):
            log.warning("%s skipped: Redis unavailable: %s", what, result)
            failed.add(what)
        elif isinstance(result, BaseException):
            raise result
    return failed

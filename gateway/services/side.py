"""Steps that follow a committed store write: bounded, logged, never the request's failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from redis.exceptions import RedisError

__all__ = ["all_quietly", "attempt", "quietly"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def quietly(what: str, work: Awaitable[_T], budget: float) -> _T | None:
    """`work`'s result, or None when Redis failed or did not answer within `budget` (logged):
    the store has the truth, so a cache or bus step never fails the request."""
    try:
        async with asyncio.timeout(budget):
            return await work
    except (RedisError, TimeoutError) as exc:
        _skipped(what, exc)
        return None


async def attempt(what: str, work: Awaitable[object], budget: float) -> bool:
    """`quietly` for a step whose result does not matter: whether Redis took it (the caller
    notes a failure for repair)."""
    try:
        async with asyncio.timeout(budget):
            await work
    except (RedisError, TimeoutError) as exc:
        _skipped(what, exc)
        return False
    return True


def _skipped(what: str, exc: Exception) -> None:
    log.warning("%s skipped: Redis unavailable: %s", what, exc or "timeout")


async def all_quietly(steps: Mapping[str, Awaitable[object]], budget: float) -> set[str]:
    """Independent steps at once, under one deadline: issued together they share one round trip
    through the auto-pipeline. Each Redis failure is logged with its step's name; returns the
    names of the steps that failed (for the caller to note for repair)."""
    try:
        async with asyncio.timeout(budget):
            results = await asyncio.gather(*steps.values(), return_exceptions=True)
    except TimeoutError as exc:
        _skipped(", ".join(steps), exc)
        return set(steps)
    failed = set()
    for what, result in zip(steps, results, strict=True):
        if isinstance(result, RedisError):
            _skipped(what, result)
            failed.add(what)
        elif isinstance(result, BaseException):
            raise result
    return failed

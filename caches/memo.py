"""A memo for pure functions of ids (UUID text, UUID parsing) on hot paths.

`functools.lru_cache` thrashes when the working set cycles past its size: with 20,000 users
heartbeating in turn, a 16,384-entry LRU misses on every call and pays its bookkeeping on top.
This memo keeps everything up to `size` entries and starts over when full, so any working set
below the bound hits on every call after the first, and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

__all__ = ["bounded_memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def bounded_memo(function: Callable[[K], V], size: int) -> Callable[[K], V]:
    """`function`, remembering up to `size` results (cleared when full). `function` must be
    pure and never return None."""
    memo: dict[K, V] = {}
    lookup = memo.get

    def memoized(key: K) -> V:
        value = lookup(key)
        if value is None:
            if len(memo) >= size:
                memo.clear()
            value = memo[key] = function(key)
        return value

    return memoized

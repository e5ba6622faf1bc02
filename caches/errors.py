"""The caches package's exceptions: callers never need to import redis-py to handle a failure."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from redis.exceptions import OutOfMemoryError, RedisError

__all__ = [
    "REDIS_FAILURES",
    "CacheError",
    "CacheUnavailable",
    "raise_unavailable",
    "translated",
    "translating",
    "unavailable",
]

_C = TypeVar("_C", bound=type)
_T = TypeVar("_T")

REDIS_FAILURES = (RedisError, RuntimeError, AttributeError)
"""What a redis-py call may raise when Redis or a connection failed; catch these, then let
`unavailable` (or `raise_unavailable`) tell a failure from a bug."""

_STREAM_METHODS = frozenset(
    {"write", "writelines", "drain", "read", "readline", "readexactly", "at_eof", "close"}
)


class CacheError(Exception):
    """Base of every error raised by the caches package."""


class CacheUnavailable(CacheError):
    """Redis failed, refused or did not answer; `__cause__` is redis-py's own error.

    `out_of_memory`: Redis refused a write at its memory limit (it still takes DEL then).
    """

    def __init__(self, message: str, *, out_of_memory: bool = False) -> None:
        super().__init__(message)
        self.out_of_memory = out_of_memory

    @classmethod
    def from_redis(cls, exc: RedisError) -> CacheUnavailable:
        full = isinstance(exc, OutOfMemoryError) or "used memory > 'maxmemory'" in str(exc)
        return cls(str(exc) or type(exc).__name__, out_of_memory=full)


def unavailable(exc: BaseException) -> CacheUnavailable | None:
    """`exc` as our `CacheUnavailable` when it means Redis failed; None for anything else.

    Besides redis-py's own errors: uvloop raises RuntimeError, not ConnectionError, for a write
    on a transport the server closed, and redis-py lets it through (seen on a cluster's dead
    primary during a failover). That is a lost connection, not a bug. And a cluster node of
    redis-py closes its idle connections after a topology change while other tasks may be
    taking them: the command then finds its stream gone (`None.writelines`, an AttributeError).
    That too is a connection lost under the command, never sent."""
    if isinstance(exc, RedisError):
        return CacheUnavailable.from_redis(exc)
    if isinstance(exc, RuntimeError) and "handler is closed" in str(exc):
        return CacheUnavailable(f"connection lost: {exc}")
    if isinstance(exc, AttributeError) and exc.obj is None and exc.name in _STREAM_METHODS:
        return CacheUnavailable(f"connection closed under the command: {exc}")
    return None


def raise_unavailable(exc: BaseException) -> NoReturn:
    """Raise `exc` as `CacheUnavailable` when it means Redis failed, else as it is; called in
    an `except REDIS_FAILURES` clause, so the success path pays nothing."""
    lost = unavailable(exc)
    if lost is None:
        raise exc
    raise lost from exc


async def translated(pending: Awaitable[_T]) -> _T:
    """Await `pending` (a redis-py call), raising `CacheUnavailable` where Redis failed."""
    try:
        return await pending
    except REDIS_FAILURES as exc:
        raise_unavailable(exc)


def _translated(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except REDIS_FAILURES as exc:
            raise_unavailable(exc)

    return call


def translating(cls: _C) -> _C:
    """Class decorator: every public coroutine method of `cls` raises `CacheUnavailable` where
    redis-py raised its own error, so the caches' callers handle one exception of ours."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _translated(member))
    return cls

"""Clients whose single commands are pipelined automatically.

Commands issued while a batch is in flight are queued and sent together in the next one, in
issue order: under load, hundreds of client events cost one round trip and one syscall pair.
Batches are ordinary redis-py pipelines (`client.pipeline()`), so a cluster client routes each
command to its slot's node exactly as it would unpipelined. The caches use these clients
unchanged: they only see a `redis.asyncio.Redis` or `RedisCluster`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from caches.redis import RedisClient

__all__ = ["AutoPipeline", "auto_pipelined"]

log = logging.getLogger(__name__)

_MAX_BATCH = 1000

_Call = tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]


class AutoPipeline:
    """The queue and the sender; `run()` belongs in the owner's task group."""

    def __init__(self, base: RedisClient) -> None:
        self._base = base
        self._queue: list[_Call] = []
        self._wake = asyncio.Event()

    async def call(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, options, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        """Send queued commands until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[:_MAX_BATCH]
                del self._queue[:_MAX_BATCH]
                try:
                    await self._send(batch)
                except Exception as exc:  # the task's edge: fail this batch, keep serving
                    log.exception("auto-pipeline: sending a batch failed")
                    _fail(batch, exc)

    async def _send(self, batch: list[_Call]) -> None:
        if isinstance(self._base, RedisCluster):
            pipe: Any = self._base.pipeline()
        else:
            pipe = self._base.pipeline(transaction=False)
        for args, options, _ in batch:
            pipe.execute_command(*args, **options)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the whole batch failed (connection lost, timeout)
            _fail(batch, exc)
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _fail(batch: list[_Call], exc: BaseException) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(exc)


class _Pipelined:
    """Mixed into a copy of the caller's client class: every command goes through the queue;
    `pipeline()` still gives an ordinary pipeline."""

    _auto: AutoPipeline

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._auto.call(args, options)


class _PipelinedRedis(_Pipelined, aioredis.Redis):  # type: ignore[misc]
    pass


class _PipelinedCluster(_Pipelined, RedisCluster):  # type: ignore[misc]
    pass


def auto_pipelined(client: RedisClient) -> tuple[RedisClient, AutoPipeline]:
    """A client sharing `client`'s connections whose commands are pipelined, and the sender
    to run. Closing `client` closes both."""
    auto = AutoPipeline(client)
    wrapped: Any = copy.copy(client)  # shares the pool (standalone) or the nodes (cluster)
    wrapped.__class__ = _PipelinedCluster if isinstance(client, RedisCluster) else _PipelinedRedis
    wrapped._auto = auto
    return wrapped, auto

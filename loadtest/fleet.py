"""Connections held by several load-generator processes, for `bench.py heartbeats` and `idle`.

A socket is a descriptor on the client side too, so one process's open-files limit caps the
connections it can hold: 20,000 and more take several. Each worker process connects its share
of the tokens, then on command sends one heartbeat on every connection, the sends of all
workers spread evenly over one window (worker `w` of `k` holds connections `w`, `w + k`, ...),
and reports each ack's latency. Workers are spawned (not forked from a running event loop) and
inherit the parent's CPU affinity. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from loadtest.bench_fanout import until
from loadtest.wsclient import open_clients

__all__ = ["Burst", "Fleet", "processes_for"]

_HEARTBEAT = b'{"type":"heartbeat","id":"h"}'
_ACK = b'{"type":"heartbeat_ack"'
_ERROR = b'{"type":"error"'
_SPARE_FILES = 1_000
"""Descriptors a worker keeps for everything but its connections."""


def processes_for(connections: int) -> int:
    """Worker processes needed for `connections` within this process's open-files limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, math.ceil(connections / max(soft - _SPARE_FILES, 1)))


@dataclass(frozen=True, slots=True)
class Burst:
    latencies: list[float]
    """Seconds from each heartbeat's send to its ack."""
    failed: int
    """Heartbeats answered with an error, or not answered within the deadline."""


class Fleet:
    """`async with Fleet(url, tokens, processes) as fleet:` opens a connection per token over
    `processes` workers; `connected` and `refused` say how that went."""

    def __init__(self, url: str, tokens: list[str], processes: int, timeout: float = 60.0):
        self._url, self._tokens, self._timeout = url, tokens, timeout
        self._count = max(1, min(processes, len(tokens)))
        self._pipes: list[Connection] = []
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self.connected = 0
        self.refused = 0

    async def __aenter__(self) -> Fleet:
        context = multiprocessing.get_context("spawn")
        for index in range(self._count):
            ours, theirs = context.Pipe()
            worker = context.Process(
                target=_worker,
                args=(theirs, self._url, self._tokens[index :: self._count], self._timeout),
                daemon=True,
            )
            worker.start()
            theirs.close()
            self._pipes.append(ours)
            self._workers.append(worker)
        for opened, refused in await self._replies(self._timeout + 30):
            self.connected += opened
            self.refused += refused
        return self

    async def heartbeat_burst(self, spread: float, deadline: float = 30.0) -> Burst:
        """Every connection sends one heartbeat, all within `spread` seconds from a common
        start; returns when every one was answered or `deadline` passed."""
        start = time.time() + 0.2  # every worker has the command before the window opens
        for index, pipe in enumerate(self._pipes):
            pipe.send(("burst", start, spread, index, self._count, len(self._tokens), deadline))
        latencies: list[float] = []
        failed = 0
        for worker_latencies, worker_failed in await self._replies(spread + deadline + 30):
            latencies += worker_latencies
            failed += worker_failed
        return Burst(latencies, failed)

    async def _replies(self, timeout: float) -> list[Any]:
        async def reply(pipe: Connection) -> Any:
            if not await asyncio.to_thread(pipe.poll, timeout):
                raise TimeoutError("a load-generator worker did not answer in time")
            return pipe.recv()

        return list(await asyncio.gather(*(reply(pipe) for pipe in self._pipes)))

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("close",))
            except OSError:
                pass
        for worker in self._workers:
            await asyncio.to_thread(worker.join, 10)
            if worker.is_alive():
                worker.kill()
                worker.join()
        for pipe in self._pipes:
            pipe.close()


def _worker(pipe: Connection, url: str, tokens: list[str], timeout: float) -> None:
    try:
        import uvloop

        uvloop.run(_hold(pipe, url, tokens, timeout))
    except ImportError:
        asyncio.run(_hold(pipe, url, tokens, timeout))


async def _hold(pipe: Connection, url: str, tokens: list[str], timeout: float) -> None:
    sent_at = [0.0] * len(tokens)
    latencies: list[float] = []
    failed = [0]

    def receiver(slot: int) -> Callable[[bytes], None]:
        def on_message(raw: bytes) -> None:
            if raw.startswith(_ACK):
                latencies.append(time.perf_counter() - sent_at[slot])
            elif raw.startswith(_ERROR):
                failed[0] += 1

        return on_message

    clients, _ = await open_clients(
        url, tokens, 200, timeout, [receiver(slot) for slot in range(len(tokens))]
    )
    opened = [(slot, client) for slot, client in enumerate(clients) if client is not None]
    pipe.send((len(opened), len(tokens) - len(opened)))
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command[0] == "close":
            break
        _, start, spread, index, workers, total, deadline = command
        begin = time.perf_counter() + (start - time.time())
        for slot, client in opened:  # this worker's connections sit at index, index + k, ...
            due = begin + spread * (index + slot * workers) / total
            if due - time.perf_counter() > 0.002:
                await asyncio.sleep(due - time.perf_counter())
            sent_at[slot] = time.perf_counter()
            client.send(_HEARTBEAT)
        await until(lambda: len(latencies) + failed[0] >= len(opened), deadline, 0.05)
        unanswered = len(opened) - len(latencies) - failed[0]
        pipe.send((list(latencies), failed[0] + max(unanswered, 0)))
        latencies.clear()
        failed[0] = 0
    for _, client in opened:
        client.close()

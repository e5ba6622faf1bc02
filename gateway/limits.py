"""Process limits for holding many connections: the open-files limit (raised to the hard limit
at start, and the connection ceiling it implies said in the log: a socket is a descriptor;
running out means accept errors for everyone), and the garbage collector's thresholds."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import time

__all__ = [
    "CollectAfterFaults",
    "connection_room",
    "raise_open_files_limit",
    "settle_garbage_collector",
    "tune_garbage_collector",
]

log = logging.getLogger(__name__)

_RESERVED = 100
"""Descriptors kept for Redis, the store, logs and listeners."""


# The default thresholds (700, 10, 10) run a full collection every few seconds under load, and
# a full collection walks every object of every connection: with 12,000 connections, 7 of 18 s
# of CPU in a heartbeat burst went there. Fewer, larger young collections promote far less, so
# full ones (which still reclaim the cycles closed connections leave) become rare.
_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Collection thresholds for a process holding many long-lived connections."""
    gc.set_threshold(*_THRESHOLDS)


def settle_garbage_collector() -> None:
    """Once built, before serving: what start-up made (modules, classes, functions: most of a ready
    instance's 50,000-odd objects, which live as long as the process) is moved out of every
    later collection, so a full one walks only what serving made. Measured here: a full
    collection of a serving instance took 30-50 ms of CPU, a pause every ~20 s under load,
    nearly all of it spent walking start-up's objects. The price: a start-up object that later
    becomes garbage in a reference cycle is never freed (its first pooled connections, say,
    replaced after a fault); bounded by what start-up made, once."""
    gc.collect()
    gc.freeze()


class CollectAfterFaults:
    """One full collection a while after a fault is over.

    A Redis failure leaves garbage in reference cycles (redis-py's cluster pipelines and the
    tracebacks of the failed calls hold frames, buffers and closed connections), and its calls
    live long enough to be promoted to the oldest generation, which the thresholds above leave
    alone for long: a cluster losing a primary every 20 s grew an instance's memory by half in
    8 minutes, all of it garbage. Collected `delay` seconds after the first recovery of an
    episode (the tail of its failed calls has ended by then), once per episode."""

    def __init__(self, delay: float = 10.0) -> None:
        self._delay = delay
        self._due: float | None = None
        self.collections = 0

    def fault_over(self) -> None:
        if self._due is None:
            self._due = time.monotonic() + self._delay

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._delay))
            if self._due is not None and time.monotonic() >= self._due:
                self._due = None
                started = time.perf_counter()
                freed = gc.collect()
                self.collections += 1
                log.info(
                    "full garbage collection after a fault: %d objects freed in %.0f ms",
                    freed,
                    (time.perf_counter() - started) * 1000,
                )


def connection_room(open_files: int) -> int:
    """The connections an open-files limit leaves room for (a socket is a descriptor)."""
    return max(open_files - _RESERVED, 0)


def raise_open_files_limit(max_connections: int) -> int:
    """Raise the soft limit to the hard one; the connections the instance may hold:
    `max_connections`, or the room the limit leaves when that is fewer (past it, accept() would
    fail for everyone alike, so the connections beyond are refused like any over the cap)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d: %s", soft, exc)
    room = connection_room(soft)
    if room < max_connections:
        log.warning(
            "open-files limit %d leaves room for about %d connections, fewer than "
            "--max-connections %d: connections beyond the room are refused; raise the hard "
            "limit (ulimit -Hn) to hold more",
            soft,
            room,
            max_connections,
        )
        return room
    log.info("open-files limit %d: room for about %d connections", soft, room)
    return max_connections

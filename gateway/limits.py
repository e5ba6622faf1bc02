"""Process limits for holding many connections: the open-files limit (raised to the hard limit
at start, and the connection ceiling it implies said in the log: a socket is a descriptor;
running out means accept errors for everyone), and the garbage collector's thresholds."""

from __future__ import annotations

import gc
import logging
import resource

__all__ = ["connection_room", "raise_open_files_limit", "tune_garbage_collector"]

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

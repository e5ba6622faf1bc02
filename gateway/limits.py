"""The process's open-files limit: raised to the hard limit at start, and the connection
ceiling it implies said in the log (a socket is a descriptor; running out means accept errors
for everyone)."""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_open_files_limit"]

log = logging.getLogger(__name__)

_RESERVED = 100
"""Descriptors kept for Redis, the store, logs and listeners."""


def raise_open_files_limit(max_connections: int) -> int:
    """Raise the soft limit to the hard one; the connections it leaves room for."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d: %s", soft, exc)
    room = max(soft - _RESERVED, 0)
    if room < max_connections:
        log.warning(
            "open-files limit %d leaves room for about %d connections, fewer than "
            "--max-connections %d: raise the hard limit (ulimit -Hn) or lower the setting",
            soft,
            room,
            max_connections,
        )
    else:
        log.info("open-files limit %d: room for about %d connections", soft, room)
    return room

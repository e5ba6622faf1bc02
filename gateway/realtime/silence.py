"""Which connections went silent, checked at O(due) cost, not O(all).

A timing wheel: connections sit in the slot of their deadline (last frame + limit), a slot
being one tick wide. Frames only move `last_heard`; when a slot comes due, a connection heard
since is moved to the slot of its new deadline, so each costs at most one move per limit
period, and one list entry (not an object) of memory.
"""

from __future__ import annotations

import math

from gateway.realtime.connection import Connection, ConnState

__all__ = ["SilenceWatch"]


class SilenceWatch:
    def __init__(self, limit: float, tick: float = 0.25) -> None:
        self._limit = limit
        self._tick = tick
        self._slots: dict[int, list[Connection]] = {}
        self._next = -1  # the first slot not yet checked

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots.values())

    def _slot(self, deadline: float) -> int:
        # Rounded up: a connection is never reported before its deadline.
        return max(math.ceil(deadline / self._tick), self._next)

    def add(self, conn: Connection) -> None:
        self._slots.setdefault(self._slot(conn.last_heard + self._limit), []).append(conn)

    def due(self, now: float) -> list[Connection]:
        """Open connections silent for longer than the limit at `now` (each reported once)."""
        silent = []
        current = math.floor(now / self._tick)
        if self._next < 0:
            self._next = min(self._slots, default=current)
        while self._next <= current:
            for conn in self._slots.pop(self._next, ()):
                if conn.state is not ConnState.OPEN:
                    continue
                deadline = conn.last_heard + self._limit
                if deadline > now:
                    self._slots.setdefault(self._slot(deadline), []).append(conn)
                else:
                    silent.append(conn)
            self._next += 1
        return silent

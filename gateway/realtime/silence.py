"""Which connections went silent: a heap of deadlines, so a check costs O(due), not O(all).

A connection's deadline is its last frame + the limit. Frames only move `last_heard`; when an
entry comes due and the connection was heard since, the entry is pushed again at its new
deadline, so each connection costs at most one re-push per limit period.
"""

from __future__ import annotations

import heapq

from gateway.realtime.connection import Connection, ConnState

__all__ = ["SilenceWatch"]


class SilenceWatch:
    def __init__(self, limit: float) -> None:
        self._limit = limit
        # (deadline, connection id, connection): the id breaks ties without a counter.
        self._heap: list[tuple[float, str, Connection]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, conn: Connection) -> None:
        heapq.heappush(self._heap, (conn.last_heard + self._limit, conn.id, conn))

    def due(self, now: float) -> list[Connection]:
        """Open connections silent for longer than the limit at `now` (each reported once)."""
        silent = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, conn = heapq.heappop(heap)
            if conn.state is not ConnState.OPEN:
                continue
            deadline = conn.last_heard + self._limit
            if deadline > now:
                heapq.heappush(heap, (deadline, conn.id, conn))
            else:
                silent.append(conn)
        return silent

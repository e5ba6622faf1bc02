"""Per-connection rate limiting: a token bucket, and the abuse rule that closes with 4008."""

from __future__ import annotations

__all__ = ["ABUSE_WINDOW", "TokenBucket", "record_rejection"]

ABUSE_WINDOW = 10.0
"""Seconds over which rejected frames are counted towards closing the connection."""


class TokenBucket:
    """`rate` tokens per second up to `burst`; each frame takes one. Pure: the caller passes now."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """True when a frame may pass at `now`."""
        elapsed = now - self._stamp
        self._stamp = now
        tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    def wait(self) -> float:
        """Seconds from the last `take` until a token is there (0 when one is)."""
        return max(0.0, (1.0 - self._tokens) / self._rate)

    def full_at(self) -> float:
        """When the bucket is full again (nothing lost by forgetting it then)."""
        return self._stamp + (self._burst - self._tokens) / self._rate


def record_rejection(history: list[float], now: float, limit: int) -> bool:
    """Note a rejected frame in `history`; True when `limit` fell inside the abuse window."""
    history.append(now)
    cutoff = now - ABUSE_WINDOW
    while history and history[0] < cutoff:
        history.pop(0)
    return len(history) >= limit

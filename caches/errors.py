"""The caches package's one base exception."""

from __future__ import annotations

__all__ = ["CacheError"]


class CacheError(Exception):
    """Base of every error raised by the caches package itself (not Redis's own errors)."""

"""Where this process's Redis is: the configured URL, or a private embedded server whose URL
is written to a runtime file so `presence-gateway token` in the same directory finds it."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from caches.redis import configured_or_embedded

__all__ = ["RUNTIME_FILE", "embedded_url", "redis_url"]

RUNTIME_FILE = "presence-gateway.runtime.json"


@contextlib.contextmanager
def redis_url(configured: str) -> Iterator[str]:
    """`configured` when set; else an embedded server's URL for the duration of the block."""
    with configured_or_embedded(configured) as url:
        if configured:
            yield url
            return
        runtime = Path(RUNTIME_FILE)
        runtime.write_text(json.dumps({"redis_url": url, "pid": os.getpid()}))
        try:
            yield url
        finally:
            with contextlib.suppress(FileNotFoundError):
                runtime.unlink()


def embedded_url() -> str | None:
    """The URL a gateway serving from this directory with the embedded Redis wrote, if any."""
    runtime = Path(RUNTIME_FILE)
    if not runtime.exists():
        return None
    return str(json.loads(runtime.read_text())["redis_url"])

"""One plain HTTP GET for tests: the status (0 when nothing listens) and the body."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""  # nothing listening

"""Development-only HTTP routes (`serve --dev`): the demo chat page and a token route.

`/demo/` serves the page (gateway/demo/) and the JavaScript SDK it is built on (/demo/sdk/,
clients/js/src/). `/dev/token?name=alice` creates a session and signs a token for a user named
by a display name (the same name is the same user on every instance: its id is derived from the
name), and lists the user in a small directory in Redis that `/dev/users` returns, so the page
can show everyone who has signed in as a contact. None of this exists without `--dev`.
"""

from __future__ import annotations

import asyncio
import http
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.exceptions import RedisError
from websockets.http11 import Response

from caches import CacheUnavailable, SessionCache
from caches.redis import RedisClient
from gateway.auth import mint_token
from gateway.protocol.ids import parse_uuid
from gateway.responses import answer, json_answer, problem

__all__ = ["DEMO_DIR", "DevRoutes", "dev_user_id"]

DEMO_DIR = Path(__file__).parent / "demo"

_NAMESPACE = uuid.UUID("5b0f9a7e-3c1d-4e8a-9f6b-2d7c8e1a4b90")
_DIRECTORY_KEY = "dev:users"
_MAX_NAME = 40
_MAX_DIRECTORY = 500
_TTL_RANGE = (5.0, 86_400.0)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".ts": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}


def dev_user_id(name: str) -> uuid.UUID:
    """The id of the development user called `name` (case and spaces around it ignored)."""
    return uuid.uuid5(_NAMESPACE, name.strip().casefold())


_DEV_HEADERS: dict[str, Any] = {"cache_control": "no-cache", "nosniff": True}
"""Every development answer is revalidated (the page changes under `--dev`) and typed."""


def _answer(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    return answer(status, body, content_type, **_DEV_HEADERS)


def _json(status: http.HTTPStatus, body: Any) -> Response:
    return json_answer(status, body, **_DEV_HEADERS)


def _error(status: http.HTTPStatus, code: str, message: str) -> Response:
    return problem(status, code, message, **_DEV_HEADERS)


class DevRoutes:
    """`/demo/...` and `/dev/...` (GET). The files are read once, at start."""

    def __init__(
        self,
        *,
        redis: RedisClient,
        sessions: SessionCache,
        secret: str,
        budget: float,
        audience: str = "",
        issuer: str = "",
        demo_dir: Path = DEMO_DIR,
    ) -> None:
        self._redis = redis
        self._sessions = sessions
        self._secret = secret
        self._budget = budget
        self._audience = audience
        self._issuer = issuer
        self._files = _read_files(demo_dir)
        self._files["/demo/"] = self._files["/demo/index.html"]

    def handles(self, path: str) -> bool:
        return path == "/demo" or path.startswith(("/demo/", "/dev/"))

    async def answer(self, target: str) -> Response:
        """The answer to a GET of `target` (path and query), for a path `handles` took."""
        parts = urlsplit(target)
        path = parts.path
        if path == "/demo":
            moved = _answer(http.HTTPStatus.MOVED_PERMANENTLY, b"", "text/plain")
            moved.headers["Location"] = "/demo/"
            return moved
        if path in ("/dev/token", "/dev/users"):
            try:
                async with asyncio.timeout(self._budget):
                    if path == "/dev/users":
                        return await self._users()
                    return await self._token(parse_qs(parts.query))
            except (CacheUnavailable, RedisError, TimeoutError):
                return _error(http.HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "retry later")
        found = self._files.get(path)
        if found is None:
            return _error(http.HTTPStatus.NOT_FOUND, "not_found", f"no file {path[:100]}")
        return _answer(http.HTTPStatus.OK, *found)

    async def _token(self, query: dict[str, list[str]]) -> Response:
        name = (query.get("name") or [""])[0].strip()
        raw_user = (query.get("user") or [""])[0]
        try:
            ttl = float((query.get("ttl") or ["3600"])[0])
            user_id = parse_uuid(raw_user) if raw_user else dev_user_id(name)
        except ValueError:
            return _error(
                http.HTTPStatus.BAD_REQUEST, "invalid_field", "user must be a UUID, ttl seconds"
            )
        if not (raw_user or name) or len(name) > _MAX_NAME:
            return _error(
                http.HTTPStatus.BAD_REQUEST,
                "invalid_field",
                f"name=<1-{_MAX_NAME} characters> or user=<uuid>",
            )
        if not _TTL_RANGE[0] <= ttl <= _TTL_RANGE[1]:
            return _error(http.HTTPStatus.BAD_REQUEST, "invalid_field", "ttl: 5 to 86400 seconds")
        name = name or str(user_id)[:8]
        token = await mint_token(
            self._sessions,
            self._secret,
            user_id,
            ttl=ttl,
            username=name,
            audience=self._audience,
            issuer=self._issuer,
        )
        if await self._redis.hlen(_DIRECTORY_KEY) < _MAX_DIRECTORY:
            await self._redis.hset(_DIRECTORY_KEY, str(user_id), name)
        return _json(
            http.HTTPStatus.OK,
            {
                "token": token,
                "user_id": str(user_id),
                "name": name,
                "expires_at": int(time.time() + ttl),
            },
        )

    async def _users(self) -> Response:
        entries = await self._redis.hgetall(_DIRECTORY_KEY)
        users = sorted(
            ({"user_id": _text(k), "name": _text(v)} for k, v in entries.items()),
            key=lambda user: user["name"].casefold(),
        )
        return _json(http.HTTPStatus.OK, {"users": users})


def _read_files(root: Path) -> dict[str, tuple[bytes, str]]:
    """Every servable file under `root` by its URL path; `sdk/` is a link to the SDK's
    sources, followed."""
    files = {}
    for folder, _, names in os.walk(root, followlinks=True):
        for name in names:
            path = Path(folder, name)
            if path.suffix in _TYPES:
                url = "/demo/" + path.relative_to(root).as_posix()
                files[url] = (path.read_bytes(), _TYPES[path.suffix])
    return files


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value

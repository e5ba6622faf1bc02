"""Plain HTTP routes on the WebSocket port: health, readiness, metrics and the presence API."""

from __future__ import annotations

import asyncio
import hmac
import http
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from caches import CacheUnavailable, PresenceCache, PresenceStatus
from gateway.auth import Authenticator, AuthError, bearer_token
from gateway.dev import DevRoutes
from gateway.metrics import CONTENT_TYPE
from gateway.protocol.ids import parse_uuid, parse_uuids
from gateway.responses import json_answer, problem

__all__ = ["HttpRoutes", "problem"]

_MAX_BULK_IDS = 1000
_BULK_PATH = "/api/v1/users/presence/bulk"


Visible = Callable[[uuid.UUID, list[uuid.UUID]], Awaitable[set[uuid.UUID]]]
"""Those of the ids the watcher may see (`--presence-visibility`)."""

Readiness = Callable[[], Awaitable[list[str]]]
"""Why the instance is not ready (empty when it is)."""


def _same_origin(headers: Headers) -> bool:
    """No Origin (not a browser), or the origin of this very host and port."""
    origin = headers.get("Origin")
    if origin is None:
        return True
    host = headers.get("Host", "")
    return origin in (f"http://{host}", f"https://{host}")


class HttpRoutes:
    """`process_request` for the websockets server: `/ws` upgrades, every other path answers.

    Every route that reads Redis answers within `budget` seconds, 503 when Redis does not.
    """

    def __init__(
        self,
        *,
        readiness: Readiness,
        metrics: Callable[[], bytes],
        authenticator: Authenticator,
        presence: PresenceCache,
        budget: float,
        metrics_token: str = "",
        metrics_here: bool = True,
        ws_gate: Callable[[ServerConnection], str | None] | None = None,
        visible: Visible | None = None,
        dev: DevRoutes | None = None,
        same_origin_only: bool = False,
    ) -> None:
        """`metrics_here`: False when /metrics has a listener of its own (`process_metrics`);
        `metrics_token`: the bearer /metrics requires (empty: none); `dev`: the demo page and
        token route (`--dev`); `same_origin_only`: a browser's WebSocket only from a page this
        port served (`--dev` without `--allowed-origins`)."""
        self._readiness = readiness
        self._metrics = metrics
        self._metrics_token = metrics_token.encode()
        self._metrics_here = metrics_here
        self._ws_gate = ws_gate
        self._visible = visible
        self._dev = dev
        self._same_origin_only = same_origin_only
        self._authenticator = authenticator
        self._presence = presence
        self._budget = budget

    @property
    def serves_demo(self) -> bool:
        return self._dev is not None

    async def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            if self._same_origin_only and not _same_origin(request.headers):
                return problem(
                    http.HTTPStatus.FORBIDDEN,
                    "forbidden",
                    "this origin is not allowed: --dev accepts pages it served itself; "
                    "list others in --allowed-origins",
                )
            refused = self._ws_gate(ws) if self._ws_gate is not None else None
            if refused is None:
                return None
            response = problem(http.HTTPStatus.SERVICE_UNAVAILABLE, "over_capacity", refused)
            response.headers["Retry-After"] = "5"
            return response
        if request.method != "GET":
            return problem(
                http.HTTPStatus.METHOD_NOT_ALLOWED,
                "method_not_allowed",
                f"{request.method[:20]} is not allowed here (GET only)",
            )
        if path == "/healthz":
            return json_answer(http.HTTPStatus.OK, {"status": "ok"})
        if path == "/readyz":
            return await self._ready()
        if path == "/metrics" and self._metrics_here:
            return self._scrape(request)
        if self._dev is not None and self._dev.handles(path):
            return await self._dev.answer(request.path)
        if path.startswith("/api/v1/users/"):
            try:
                async with asyncio.timeout(self._budget):
                    return await self._presence_api(request, path)
            except (CacheUnavailable, TimeoutError):
                return problem(http.HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "retry later")
        return problem(http.HTTPStatus.NOT_FOUND, "not_found", f"no route for {path[:100]}")

    async def process_metrics(self, ws: ServerConnection, request: Request) -> Response:
        """The separate metrics listener: /metrics, nothing else, never an upgrade."""
        if urlsplit(request.path).path == "/metrics":
            return self._scrape(request)
        return problem(http.HTTPStatus.NOT_FOUND, "not_found", "only /metrics here")

    def _scrape(self, request: Request) -> Response:
        if self._metrics_token:
            given = (bearer_token(request.headers.get("Authorization")) or "").encode()
            if not hmac.compare_digest(given, self._metrics_token):
                return problem(
                    http.HTTPStatus.UNAUTHORIZED, "unauthenticated", "Authorization: Bearer <token>"
                )
        body = self._metrics()
        headers = Headers([("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return Response(200, "OK", headers, body)

    async def _ready(self) -> Response:
        reasons = await self._readiness()
        if reasons:
            return json_answer(
                http.HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unready", "reasons": reasons}
            )
        return json_answer(http.HTTPStatus.OK, {"status": "ready"})

    async def _presence_api(self, request: Request, path: str) -> Response:
        token = bearer_token(request.headers.get("Authorization"))
        if not token:
            return problem(
                http.HTTPStatus.UNAUTHORIZED, "unauthenticated", "Authorization: Bearer <jwt>"
            )
        try:
            watcher = (await self._authenticator.authenticate(token)).user_id
        except AuthError as exc:
            return problem(http.HTTPStatus.UNAUTHORIZED, "unauthenticated", str(exc))
        parts = path.removeprefix("/api/v1/users/").split("/")
        if parts == ["presence", "bulk"]:
            return await self._bulk(request, watcher)
        if len(parts) == 2 and parts[1] == "presence":
            return await self._one(parts[0], watcher)
        return problem(http.HTTPStatus.NOT_FOUND, "not_found", f"no route for {path[:100]}")

    async def _allowed(self, watcher: uuid.UUID, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return set(ids) if self._visible is None else await self._visible(watcher, ids)

    async def _one(self, raw_id: str, watcher: uuid.UUID) -> Response:
        try:
            user_id = parse_uuid(raw_id)
        except ValueError:
            return problem(http.HTTPStatus.BAD_REQUEST, "invalid_id", "user id must be a UUID")
        if user_id not in await self._allowed(watcher, [user_id]):
            return problem(http.HTTPStatus.FORBIDDEN, "forbidden", "not allowed to see this user")
        status, last_seen = (await self._presence.get_bulk_presence([user_id]))[user_id]
        return json_answer(
            http.HTTPStatus.OK,
            {
                "status": status.value,
                "last_seen": last_seen,
                "is_online": status is PresenceStatus.ONLINE,
            },
        )

    async def _bulk(self, request: Request, watcher: uuid.UUID) -> Response:
        """GET `?ids=<uuid>,...` (or `ids` repeated): the request line is limited to 8 KiB,
        about 200 ids; `presence.query` on the WebSocket takes 1,000."""
        raw = ",".join(parse_qs(urlsplit(request.path).query).get("ids", []))
        pieces = [p for p in raw.split(",") if p]
        if not pieces:
            return problem(
                http.HTTPStatus.BAD_REQUEST,
                "invalid_id",
                "ids=<uuid>,<uuid>,...",
            )
        if len(pieces) > _MAX_BULK_IDS:
            return problem(
                http.HTTPStatus.BAD_REQUEST, "too_many_ids", f"at most {_MAX_BULK_IDS} ids"
            )
        try:
            ids = parse_uuids(pieces)
        except ValueError:
            return problem(http.HTTPStatus.BAD_REQUEST, "invalid_id", "every id must be a UUID")
        allowed = await self._allowed(watcher, ids)
        statuses = await self._presence.get_bulk_status([u for u in ids if u in allowed])
        answer = {str(u): statuses[u].value if u in allowed else "forbidden" for u in ids}
        return json_answer(http.HTTPStatus.OK, answer)

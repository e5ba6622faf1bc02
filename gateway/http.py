"""Plain HTTP routes on the WebSocket port: health, readiness, metrics and the presence API."""

from __future__ import annotations

import http
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson
from redis.exceptions import RedisError
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from caches import PresenceStatus
from gateway.auth import AuthError, bearer_token

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["HttpRoutes"]

_MAX_BULK_IDS = 1000


def _json(status: http.HTTPStatus, body: Any) -> Response:
    payload = orjson.dumps(body, option=orjson.OPT_UTC_Z)
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ]
    )
    return Response(status.value, status.phrase, headers, payload)


def _problem(status: http.HTTPStatus, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


class HttpRoutes:
    """`process_request` for the websockets server: `/ws` upgrades, every other path answers."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw

    async def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            return None
        if path == "/healthz":
            return _json(http.HTTPStatus.OK, {"status": "ok"})
        if path == "/readyz":
            return await self._ready()
        if path == "/metrics":
            return self._metrics()
        if path.startswith("/api/v1/users/"):
            return await self._presence_api(request, path)
        return _problem(http.HTTPStatus.NOT_FOUND, "not_found", f"no route for {path[:100]}")

    async def _ready(self) -> Response:
        gw = self._gw
        reasons = []
        if gw.draining:
            reasons.append("draining")
        if not gw.bus.connected:
            reasons.append("pub/sub disconnected")
        try:
            await gw.redis.ping()
        except RedisError:
            reasons.append("redis unreachable")
        if reasons:
            return _json(
                http.HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unready", "reasons": reasons}
            )
        return _json(http.HTTPStatus.OK, {"status": "ready"})

    def _metrics(self) -> Response:
        gw = self._gw
        lines = [
            "# TYPE gateway_connections gauge",
            f"gateway_connections {len(gw.hub.connections)}",
            "# TYPE gateway_users gauge",
            f"gateway_users {len(gw.hub.by_user)}",
            "# TYPE gateway_bus_channels gauge",
            f"gateway_bus_channels {gw.bus.channel_count}",
            "# TYPE gateway_bus_reconnects_total counter",
            f"gateway_bus_reconnects_total {gw.bus.reconnects}",
            "# TYPE gateway_deliveries_total counter",
            f"gateway_deliveries_total {gw.hub.delivered}",
        ]
        for name, value in sorted(gw.metrics.items()):
            lines += [f"# TYPE gateway_{name}_total counter", f"gateway_{name}_total {value}"]
        body = ("\n".join(lines) + "\n").encode()
        headers = Headers(
            [("Content-Type", "text/plain; version=0.0.4"), ("Content-Length", str(len(body)))]
        )
        return Response(200, "OK", headers, body)

    async def _presence_api(self, request: Request, path: str) -> Response:
        token = bearer_token(request.headers.get("Authorization"))
        if not token:
            return _problem(
                http.HTTPStatus.UNAUTHORIZED, "unauthenticated", "Authorization: Bearer <jwt>"
            )
        try:
            await self._gw.authenticator.authenticate(token)
        except AuthError as exc:
            return _problem(http.HTTPStatus.UNAUTHORIZED, "unauthenticated", str(exc))
        except RedisError:
            return _problem(http.HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "retry later")
        parts = path.removeprefix("/api/v1/users/").split("/")
        try:
            if parts == ["presence", "bulk"]:
                return await self._bulk(request)
            if len(parts) == 2 and parts[1] == "presence":
                return await self._one(parts[0])
        except RedisError:
            return _problem(http.HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "retry later")
        return _problem(http.HTTPStatus.NOT_FOUND, "not_found", f"no route for {path[:100]}")

    async def _one(self, raw_id: str) -> Response:
        try:
            user_id = uuid.UUID(raw_id)
        except ValueError:
            return _problem(http.HTTPStatus.BAD_REQUEST, "invalid_id", "user id must be a UUID")
        status, last_seen = (await self._gw.presence.get_bulk_presence([user_id]))[user_id]
        return _json(
            http.HTTPStatus.OK,
            {
                "status": status.value,
                "last_seen": last_seen,
                "is_online": status is PresenceStatus.ONLINE,
            },
        )

    async def _bulk(self, request: Request) -> Response:
        raw = ",".join(parse_qs(urlsplit(request.path).query).get("ids", []))
        pieces = [p for p in raw.split(",") if p]
        if not pieces:
            return _problem(http.HTTPStatus.BAD_REQUEST, "invalid_id", "ids=<uuid>,<uuid>,...")
        if len(pieces) > _MAX_BULK_IDS:
            return _problem(
                http.HTTPStatus.BAD_REQUEST, "too_many_ids", f"at most {_MAX_BULK_IDS} ids"
            )
        try:
            ids = list(dict.fromkeys(uuid.UUID(p) for p in pieces))
        except ValueError:
            return _problem(http.HTTPStatus.BAD_REQUEST, "invalid_id", "every id must be a UUID")
        statuses = await self._gw.presence.get_bulk_status(ids)
        return _json(http.HTTPStatus.OK, {str(u): s.value for u, s in statuses.items()})

"""HTTP on the WebSocket port as a client or a scanner meets it: the bulk presence API at its
documented size (POST), and a JSON error body for every refusal, the WebSocket library's own
(414, 431, 400, 403) included."""

from __future__ import annotations

import http.client
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from caches.redis import RedisClient
from gateway.client import GatewayClient
from gateway.handshake import GatewayConnection, forget_handshake
from tests.gateways import GatewayProcess, gateways, token_for

BULK = "/api/v1/users/presence/bulk"


def _request(
    gw: GatewayProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, object]]:
    """Status, Content-Type and the JSON body of one request."""
    address = urlsplit(gw.http)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return (
            response.status,
            response.getheader("Content-Type") or "",
            orjson.loads(response.read()),
        )
    finally:
        conn.close()


def _raw(gw: GatewayProcess, data: bytes) -> tuple[int, dict[str, object]]:
    address = urlsplit(gw.http)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


async def test_bulk_presence_by_post_answers_a_thousand_ids(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        online = uuid.uuid4()
        token = await token_for(redis, online)
        client = await GatewayClient.connect(gw.url, token)
        ids = [str(online), *(str(uuid.uuid4()) for _ in range(999))]
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status, kind, body = _request(gw, "POST", BULK, orjson.dumps({"user_ids": ids}), auth)
        assert (status, kind) == (200, "application/json")
        assert len(body) == 1000 and body[str(online)] == "online"
        assert body[ids[1]] == "offline"
        too_many = orjson.dumps({"user_ids": [*ids, str(uuid.uuid4())]})
        status, _, body = _request(gw, "POST", BULK, too_many, auth)
        assert status == 400 and body["error"]["code"] == "too_many_ids"  # type: ignore[index]
        status, _, body = _request(gw, "POST", BULK, b"{not json", auth)
        assert status == 400 and body["error"]["code"] == "invalid_body"  # type: ignore[index]
        status, _, body = _request(gw, "POST", BULK, orjson.dumps({"user_ids": ids}))
        assert status == 401  # the same authentication as GET
        await client.close()


async def test_every_refusal_has_a_json_body(redis_url: str, tmp_path: Path) -> None:
    with gateways(redis_url, tmp_path, 1, allowed_origins="https://app.example") as (gw,):
        many = ",".join(str(uuid.uuid4()) for _ in range(300))  # past the 8 KiB request line
        status, kind, body = _request(gw, "GET", f"{BULK}?ids={many}")
        assert (status, kind) == (414, "application/json")
        assert body["error"]["code"] == "request_uri_too_long"  # type: ignore[index]
        status, kind, body = _request(gw, "GET", "/healthz", headers={"X-Big": "x" * 9000})
        assert (status, kind) == (431, "application/json")
        status, body = _raw(gw, b"NONSENSE\r\n\r\n")
        assert status == 400 and body["error"]["code"] == "bad_request"  # type: ignore[index]
        status, _, body = _request(gw, "POST", BULK, b"x" * (65 * 1024))
        assert status == 413
        status, _, body = _request(gw, "POST", "/healthz", b"{}")
        assert status == 405 and body["error"]["code"] == "method_not_allowed"  # type: ignore[index]
        status, _, body = _request(
            gw,
            "GET",
            "/ws",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                "Origin": "https://evil.example",
            },
        )
        assert status == 403 and body["error"]["code"] == "forbidden"  # type: ignore[index]


async def test_an_upgraded_connection_forgets_its_handshake_headers() -> None:
    """Once read (address, token), the handshake's headers are not kept for the connection's
    life: the request keeps its path, the response goes."""
    ws = GatewayConnection(ServerProtocol(), None)
    ws.request = Request(
        "/ws?v=1", Headers({"Authorization": "Bearer secret", "X-Forwarded-For": "10.0.0.1"})
    )
    ws.response = Response(101, "Switching Protocols", Headers({"Upgrade": "websocket"}))
    forget_handshake(ws)
    assert ws.request is not None
    assert (ws.request.path, list(ws.request.headers.raw_items())) == ("/ws?v=1", [])
    assert ws.response is None

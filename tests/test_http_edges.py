"""HTTP on the WebSocket port as a client or a scanner meets it: the bulk presence API at its
documented size, and clear refusals (JSON past websockets' own parser)."""

from __future__ import annotations

import http.client
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from caches.redis import RedisClient
from gateway.client import GatewayClient
from gateway.handshake import forget_handshake
from tests.gateways import GatewayProcess, gateways, token_for

BULK = "/api/v1/users/presence/bulk"


def _answer(
    gw: GatewayProcess, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """Status, Content-Type and the body of one bodiless request."""
    address = urlsplit(gw.http)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def _request(
    gw: GatewayProcess, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, object]]:
    """Status, Content-Type and the JSON body of one request."""
    status, kind, body = _answer(gw, method, path, headers)
    return status, kind, orjson.loads(body)


def _status(gw: GatewayProcess, path: str, headers: dict[str, str] | None = None) -> int:
    return _answer(gw, "GET", path, headers)[0]


def _raw_status(gw: GatewayProcess, data: bytes) -> int | None:
    """The status answered to raw bytes; None when the connection closed unanswered."""
    address = urlsplit(gw.http)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split()[1]) if answer else None


async def test_bulk_presence_answers_as_many_ids_as_a_request_line_holds(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """GET with ids in the query: about 200 fit the 8 KiB request line; more go to
    `presence.query` on the WebSocket (1,000)."""
    with gateways(redis_url, tmp_path, 1) as (gw,):
        online = uuid.uuid4()
        token = await token_for(redis, online)
        client = await GatewayClient.connect(gw.url, token)
        ids = [str(online), *(str(uuid.uuid4()) for _ in range(199))]
        auth = {"Authorization": f"Bearer {token}"}
        status, kind, body = _request(gw, "GET", f"{BULK}?ids={','.join(ids)}", headers=auth)
        assert (status, kind) == (200, "application/json")
        assert len(body) == 200 and body[str(online)] == "online"
        assert body[ids[1]] == "offline"
        status, _, body = _request(gw, "GET", f"{BULK}?ids={','.join(ids)}")
        assert status == 401  # the same authentication as the other routes
        status, _, body = _request(gw, "GET", f"{BULK}?ids=nope", headers=auth)
        assert status == 400 and body["error"]["code"] == "invalid_id"  # type: ignore[index]
        many = [str(uuid.uuid4()) for _ in range(1000)]
        answer = await client.request("presence.query", user_ids=many)
        assert len(answer["presence"]) == 1000
        await client.close()


async def test_refusals_are_clear_and_json_past_the_parser(redis_url: str, tmp_path: Path) -> None:
    """What websockets cannot parse it refuses itself (414, 431 in plain text) or closes
    unanswered (not HTTP, a request with a body); every refusal after that, its own (403
    Origin) included, carries the JSON error body."""
    with gateways(redis_url, tmp_path, 1, allowed_origins="https://app.example") as (gw,):
        many = ",".join(str(uuid.uuid4()) for _ in range(300))  # past the 8 KiB request line
        assert _status(gw, f"{BULK}?ids={many}") == 414
        assert _status(gw, "/healthz", headers={"X-Big": "x" * 9000}) == 431
        assert _raw_status(gw, b"NONSENSE\r\n\r\n") is None  # not HTTP: closed
        post = b"POST /api/v1/users/presence/bulk HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
        assert _raw_status(gw, post) is None  # a body: never a handshake
        status, _, body = _request(gw, "POST", "/healthz")
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
    ws = ServerConnection(ServerProtocol(), None)  # type: ignore[arg-type]
    ws.request = Request(
        "/ws?v=1", Headers({"Authorization": "Bearer secret", "X-Forwarded-For": "10.0.0.1"})
    )
    ws.response = Response(101, "Switching Protocols", Headers({"Upgrade": "websocket"}))
    forget_handshake(ws)
    assert ws.request is not None
    assert (ws.request.path, list(ws.request.headers.raw_items())) == ("/ws?v=1", [])
    assert ws.response is None

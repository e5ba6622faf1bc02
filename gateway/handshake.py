"""The HTTP side of the WebSocket port, where websockets' own request handling falls short.

websockets answers the requests it cannot parse itself, in plain text (414, 431), or not at all
(a malformed request, a request with a body), and reads no request body. Our connection class
keeps its handshake and framing, and changes two things: every answer it makes by itself
carries the JSON error body every other route answers with, and a request may carry a small body
(`POST /api/v1/users/presence/bulk`), read before the route sees the request.
"""

from __future__ import annotations

import http
import re
from collections.abc import Generator
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import HeaderLineTooLong, InvalidMessage, TooManyHeaders
from websockets.http11 import Request, Response, parse_headers, parse_line
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.typing import StatusLike

from gateway.errors import Error
from gateway.http import RequestWithBody, problem

__all__ = ["MAX_BODY_BYTES", "GatewayConnection", "forget_handshake"]

MAX_BODY_BYTES = 64 * 1024
"""The largest request body taken (the bulk presence API's 1,000 ids fit in 40 KiB)."""


class RequestLineTooLong(Error):
    pass


class BodyTooLarge(Error):
    pass


def _code(status: http.HTTPStatus) -> str:
    return re.sub(r"[^a-z]+", "_", status.phrase.lower()).strip("_")


def _reject_json(status: StatusLike, text: str) -> Response:
    """websockets' `reject`, with the gateway's JSON error body."""
    status = http.HTTPStatus(status)
    message = text.strip().removeprefix("Failed to open a WebSocket connection: ").rstrip(".")
    response = problem(status, _code(status), message or status.phrase)
    response.headers["Connection"] = "close"
    return response


class GatewayConnection(ServerConnection):
    """websockets' server connection with JSON error answers and request bodies."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # Nothing was received yet: the request parser can still be swapped for ours.
        protocol.reject = _reject_json  # type: ignore[method-assign]
        protocol.parser = _parse(protocol)
        next(protocol.parser)
        super().__init__(protocol, *args, **kwargs)


def _parse(protocol: ServerProtocol) -> Generator[None]:
    """`ServerProtocol.parse`, reading a request body and answering every failure in JSON."""
    try:
        request = yield from _read_request(protocol.reader)
    except Exception as exc:
        protocol.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
        protocol.handshake_exc.__cause__ = exc
        protocol.send_response(_refusal(exc))
        yield  # send_response ended the parsing: never resumed
        return
    if protocol.debug:
        protocol.logger.debug("< %s %s %s", request.method, request.path, request.protocol)
        for key, value in request.headers.raw_items():
            protocol.logger.debug("< %s: %s", key, value)
    protocol.events.append(request)
    yield from Protocol.parse(protocol)


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, RequestLineTooLong):
        limit = "the request line (path and query) is limited to 8 KiB"
        return _reject_json(http.HTTPStatus.REQUEST_URI_TOO_LONG, limit)
    if isinstance(exc, (HeaderLineTooLong, TooManyHeaders)):
        limit = "headers are limited to 8 KiB a line and 128 lines"
        return _reject_json(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, limit)
    if isinstance(exc, BodyTooLarge):
        limit = f"request bodies are limited to {MAX_BODY_BYTES // 1024} KiB"
        return _reject_json(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, limit)
    return _reject_json(http.HTTPStatus.BAD_REQUEST, f"invalid HTTP request: {exc}"[:200])


def _read_request(reader: StreamReader) -> Generator[None, None, RequestWithBody]:
    line = yield from parse_line(reader.read_line, RequestLineTooLong)
    try:
        raw_method, raw_path, raw_protocol = line.split(b" ", 2)
    except ValueError:
        raise ValueError("malformed request line") from None
    if raw_protocol not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ValueError("HTTP/1.1 or HTTP/1.0 only")
    headers = yield from parse_headers(reader.read_line)
    if "Transfer-Encoding" in headers:
        raise ValueError("transfer codings are not supported; send Content-Length")
    length = int(headers.get("Content-Length", "0") or "0")
    if length < 0:
        raise ValueError("negative Content-Length")
    if length > MAX_BODY_BYTES:
        raise BodyTooLarge()
    body = bytes((yield from reader.read_exact(length))) if length else b""
    return RequestWithBody(
        raw_path.decode("ascii"),
        headers,
        raw_method.decode("ascii"),
        raw_protocol.decode("ascii"),
        body=body,
    )


def forget_handshake(ws: ServerConnection) -> None:
    """Drop the handshake's headers once they were read: websockets keeps the request and the
    response for the connection's whole life, and with a bearer token among them they were a
    sixth of an idle connection's memory. The request keeps its path."""
    if ws.request is not None:
        ws.request = Request(ws.request.path, Headers(), ws.request.method, ws.request.protocol)
    ws.response = None

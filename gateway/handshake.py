"""The opening handshake through websockets' documented hooks only.

- `json_refusals` (`process_response`): a refusal websockets makes while accepting a request
  (a forbidden Origin, a missing Upgrade header, a wrong version) carries the JSON error body
  every other route answers with. A request websockets cannot parse at all (a request line
  past 8 KiB, oversized headers, a body, not HTTP) is answered by websockets itself, in plain
  text, before any hook runs.
- `forget_handshake`: the connection's request and response are documented attributes; the
  headers are dropped once read.
"""

from __future__ import annotations

import http
import re

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gateway.responses import problem

__all__ = ["forget_handshake", "json_refusals"]


def _code(status: http.HTTPStatus) -> str:
    return re.sub(r"[^a-z]+", "_", status.phrase.lower()).strip("_")


def json_refusals(ws: ServerConnection, request: Request, response: Response) -> Response | None:
    """websockets' own refusals, with the gateway's JSON error body (ours pass as they are)."""
    if response.status_code < 400 or response.headers.get("Content-Type") == "application/json":
        return None
    status = http.HTTPStatus(response.status_code)
    text = response.body.decode(errors="replace") if response.body else ""
    message = text.strip().removeprefix("Failed to open a WebSocket connection: ").rstrip(".")
    refusal = problem(status, _code(status), message or status.phrase)
    refusal.headers["Connection"] = "close"
    return refusal


def forget_handshake(ws: ServerConnection) -> None:
    """Drop the handshake's headers once they were read: websockets keeps the request and the
    response for the connection's whole life, and with a bearer token among them they were a
    sixth of an idle connection's memory. The request keeps its path."""
    if ws.request is not None:
        ws.request = Request(ws.request.path, Headers(), ws.request.method, ws.request.protocol)
    ws.response = None

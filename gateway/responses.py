"""HTTP answers of the WebSocket port's routes: the bytes with their length and caching
headers, JSON bodies, and the one error body shape (`{"error": {"code", "message"}}`)."""

from __future__ import annotations

import http
from typing import Any

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Response

__all__ = ["answer", "json_answer", "problem"]


def answer(
    status: http.HTTPStatus,
    body: bytes,
    content_type: str,
    *,
    cache_control: str = "no-store",
    nosniff: bool = False,
) -> Response:
    """`nosniff`: the browser takes `content_type` as given (files a page loads)."""
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", cache_control),
        ]
    )
    if nosniff:
        headers["X-Content-Type-Options"] = "nosniff"
    return Response(status.value, status.phrase, headers, body)


def json_answer(status: http.HTTPStatus, body: Any, **headers: Any) -> Response:
    """`body` as JSON (times in UTC with a Z); `headers`: `answer`'s options."""
    payload = orjson.dumps(body, option=orjson.OPT_UTC_Z)
    return answer(status, payload, "application/json", **headers)


def problem(status: http.HTTPStatus, code: str, message: str, **headers: Any) -> Response:
    return json_answer(status, {"error": {"code": code, "message": message}}, **headers)

"""One client's life: authenticate, hello, receive loop, and the cleanup when it ends."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from gateway import chat, presence, typing
from gateway.auth import AuthError, Identity, bearer_token
from gateway.connection import Connection, ConnState
from gateway.protocol import (
    Close,
    ErrorCode,
    Frame,
    ProtocolError,
    decode,
    error,
    event,
)
from gateway.ratelimit import TokenBucket, record_rejection
from gateway.store import StoreError

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["HANDLERS", "serve_client"]

log = logging.getLogger(__name__)

Handler = Callable[["Gateway", Connection, Frame], Awaitable[bytes | None]]

HANDLERS: dict[str, Handler] = {
    "heartbeat": presence.handle_heartbeat,
    "presence.subscribe": presence.handle_subscribe,
    "presence.unsubscribe": presence.handle_unsubscribe,
    "presence.query": presence.handle_query,
    "presence.set": presence.handle_set,
    "typing.start": typing.handle_start,
    "typing.stop": typing.handle_stop,
    "conversation.create": chat.handle_create,
}


async def _token_from_first_frame(gw: Gateway, ws: ServerConnection) -> str | None:
    """Browsers cannot set headers: the first frame must be `auth`, within the deadline."""
    try:
        raw = await asyncio.wait_for(ws.recv(), gw.settings.auth_timeout)
    except TimeoutError:
        await ws.close(Close.UNAUTHENTICATED, "authentication timed out")
        return None
    try:
        frame = decode(raw)
    except ProtocolError as exc:
        await ws.send(error(exc.code, exc.message, exc.request_id).decode())
        await ws.close(Close.UNAUTHENTICATED, "first frame must be auth")
        return None
    if frame.type != "auth":
        await ws.send(
            error(ErrorCode.UNAUTHENTICATED, "first frame must be auth", frame.id).decode()
        )
        await ws.close(Close.UNAUTHENTICATED, "first frame must be auth")
        return None
    token: str = frame.fields["token"]
    return token


async def _authenticate(gw: Gateway, ws: ServerConnection) -> Identity | None:
    assert ws.request is not None
    token = bearer_token(ws.request.headers.get("Authorization"))
    if token is None:
        token = await _token_from_first_frame(gw, ws)
        if token is None:
            return None
    try:
        return await gw.authenticator.authenticate(token)
    except AuthError as exc:
        gw.metrics["auth_failures"] += 1
        await ws.send(error(ErrorCode.UNAUTHENTICATED, str(exc)).decode())
        await ws.close(Close.UNAUTHENTICATED, "unauthenticated")
    except RedisError as exc:
        # Never admit anyone unchecked: the client retries, maybe on another instance.
        log.warning("auth: session cache unreachable: %s", exc)
        await ws.close(Close.TRY_AGAIN_LATER, "session store unavailable")
    return None


async def serve_client(gw: Gateway, ws: ServerConnection) -> None:
    """The websockets handler for `/ws`."""
    if gw.draining:
        await ws.close(Close.SERVICE_RESTART, "draining")
        return
    try:
        identity = await _authenticate(gw, ws)
    except ConnectionClosed:
        return
    if identity is None:
        return
    now = time.monotonic()
    conn = Connection(
        ws,
        f"{gw.settings.instance_id}.{secrets.token_hex(6)}",
        identity.user_id,
        identity.session_id,
        identity.token_id,
        identity.session,
        TokenBucket(gw.settings.rate_limit, gw.settings.rate_burst, now),
        gw.settings.send_buffer_limit,
        gw.close_connection,
    )
    try:
        await gw.attach(conn)
    except (RedisError, StoreError) as exc:
        log.warning("attach failed for %s: %s", conn.id, exc)
        await ws.close(Close.TRY_AGAIN_LATER, "backend unavailable")
        await gw.detach(conn)
        return
    try:
        conn.send(
            event(
                "hello",
                connection_id=conn.id,
                user_id=conn.user_id,
                session_id=conn.session_id,
                instance_id=gw.settings.instance_id,
                heartbeat_interval_ms=int(gw.settings.heartbeat_interval * 1000),
                lease_ms=gw.lease_ms,
                limits={
                    "max_frame_bytes": gw.settings.max_frame_bytes,
                    "rate_limit": gw.settings.rate_limit,
                    "rate_burst": gw.settings.rate_burst,
                    "max_watched": gw.settings.max_watched,
                },
            )
        )
        await _receive_loop(gw, conn)
    except ConnectionClosed:
        pass
    finally:
        await gw.detach(conn)


async def _receive_loop(gw: Gateway, conn: Connection) -> None:
    ws = conn.ws
    metrics = gw.metrics
    while conn.state is ConnState.OPEN:
        raw = await ws.recv()
        now = time.monotonic()
        conn.last_heard = now
        metrics["frames_in"] += 1
        if not conn.bucket.take(now):
            _reject_flood(gw, conn, now)
            continue
        if isinstance(raw, bytes):
            conn.send(error(ErrorCode.INVALID_FRAME, "text frames only"))
            continue
        reply = await _dispatch(gw, conn, raw)
        if reply is not None:
            conn.send(reply)


def _reject_flood(gw: Gateway, conn: Connection, now: float) -> None:
    gw.metrics["rate_limited"] += 1
    if conn.rejected_at is None:
        conn.rejected_at = []
    if record_rejection(conn.rejected_at, now, gw.settings.rate_limit_close_after):
        conn.close(Close.RATE_LIMITED, "rate limited")
    else:
        conn.send(error(ErrorCode.RATE_LIMITED, "too many frames; slow down"))


async def _dispatch(gw: Gateway, conn: Connection, raw: str) -> bytes | None:
    request_id = None
    try:
        frame = decode(raw)
        request_id = frame.id
        handler = HANDLERS.get(frame.type)
        if handler is None:  # only `auth` is valid on the wire but not here
            raise ProtocolError(
                ErrorCode.ALREADY_AUTHENTICATED, "already authenticated", request_id
            )
        return await handler(gw, conn, frame)
    except ProtocolError as exc:
        gw.metrics["errors"] += 1
        return error(exc.code, exc.message, exc.request_id)
    except (RedisError, StoreError) as exc:
        gw.metrics["errors"] += 1
        log.warning("backend unavailable handling a frame of %s: %s", conn.id, exc)
        return error(ErrorCode.UNAVAILABLE, "temporarily unavailable; retry", request_id)
    except Exception:
        gw.metrics["errors"] += 1
        log.exception("unexpected error handling a frame of %s", conn.id)
        return error(ErrorCode.INTERNAL, "internal error", request_id)

"""One client's life: authenticate, attach, hello, the receive loop, and the cleanup when it
ends; plus the instance-wide jobs on sockets: silent connections and the drain."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from caches import CacheUnavailable
from gateway import logs
from gateway.auth import Authenticator, AuthError, Identity, bearer_token
from gateway.config import Settings
from gateway.handlers import PIPELINED, HandlerContext, Outcome, handle, parse
from gateway.handshake import forget_handshake
from gateway.metrics import FRAMES_OUT, INVALID_FRAME, key
from gateway.protocol import Close, ErrorCode, ProtocolError, decode, events, frames
from gateway.ratelimit import TokenBucket, record_rejection
from gateway.realtime.admission import Admission
from gateway.realtime.connection import Connection, ConnState
from gateway.realtime.expiry import EXPIRE, TokenExpiry
from gateway.realtime.hub import Hub
from gateway.realtime.pipeline import Extra, Pipeline
from gateway.realtime.silence import SilenceWatch
from gateway.services import ConversationService, PresenceService, TypingService
from gateway.state import ClientState
from gateway.store import StoreError

__all__ = ["ClientServer"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_TICK = 0.25
_CONNECT_BOUND_MIN = 10.0
_CONNECT_BOUND_BUDGETS = 5
_BACKEND_ERRORS = (CacheUnavailable, StoreError, TimeoutError)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class ClientServer:
    """The websockets handler for `/ws` and the jobs that act on every local socket."""

    def __init__(
        self,
        *,
        settings: Settings,
        authenticator: Authenticator,
        hub: Hub,
        presence: PresenceService,
        typing: TypingService,
        conversations: ConversationService,
        context: HandlerContext,
        metrics: Counter[str],
        spawn: Spawn,
        expiry: TokenExpiry,
        admission: Admission,
    ) -> None:
        self._settings = settings
        self._authenticator = authenticator
        self._hub = hub
        self._presence = presence
        self._typing = typing
        self._conversations = conversations
        self._context = context
        self._metrics = metrics
        self._spawn = spawn
        self._budget = settings.redis.timeout
        # Connecting is bounded by the backends' own deadlines, each measured at the backend:
        # the auto-pipeline fails a Redis command unanswered `--redis-timeout` after it was
        # written, the bus's probe notices a dead subscription, the store's lock wait is
        # bounded. This outer bound only catches what they would not: it leaves room for this
        # process's own queue in a storm (thousands connecting at once put seconds of work
        # ahead of the last), which is not the backend being unavailable.
        self._connect_bound = max(_CONNECT_BOUND_MIN, _CONNECT_BOUND_BUDGETS * self._budget)
        self._silence = SilenceWatch(settings.presence.lease_ttl)
        self._expiry = expiry
        self._admission = admission
        self.draining = False
        self._extra = Extra()

    def address(self, ws: ServerConnection) -> str:
        """The client's address: the peer, or what a trusted proxy says it forwarded."""
        assert ws.request is not None
        peer = ws.remote_address[0] if ws.remote_address else ""
        return self._admission.proxies.client_address(str(peer), ws.request.headers)

    async def serve(self, ws: ServerConnection) -> None:
        if self.draining:
            await ws.close(Close.SERVICE_RESTART, "draining")
            return
        # Counted from here to the end, authenticating or not: sockets upgraded together all
        # passed the handshake's check before any of them was counted.
        refused = self._admission.open()
        if refused is not None:
            await ws.close(Close.TRY_AGAIN_LATER, refused)
            return
        try:
            admitted = await self._admit(ws)
            if admitted is None:
                return
            conn, address = admitted
            started = time.monotonic()
            pipeline: Pipeline | None = None
            # The receive loop stays in this frame: each coroutine frame an idle connection
            # holds for its life costs memory (the setup's helpers have returned by now).
            try:
                if not await self.attach(conn):
                    await ws.close(Close.TRY_AGAIN_LATER, "backend unavailable")
                    return
                self._greet(conn, address)
                metrics, context, client = self._metrics, self._context, conn.client
                while conn.state is ConnState.OPEN:
                    raw = await ws.recv()
                    now = time.monotonic()
                    conn.last_heard = now
                    if not conn.bucket.take(now):
                        self._reject_flood(conn, now)
                        continue
                    if isinstance(raw, bytes):
                        metrics[INVALID_FRAME] += 1
                        conn.send(events.error(ErrorCode.INVALID_FRAME, "text frames only"))
                        continue
                    frame = parse(context, raw)
                    if not isinstance(frame, Outcome) and type(frame) in PIPELINED:
                        if pipeline is None:  # made on a first send: an idle socket has none
                            pipeline = Pipeline(functools.partial(self._answer, conn), self._extra)
                        if pipeline.full:
                            await self._waiting(conn, pipeline.wait_for_room())
                        pipeline.start(handle(context, client, frame))
                        continue
                    if pipeline is not None:  # anything else follows the sends before it
                        await self._waiting(conn, pipeline.drain())
                    if not isinstance(frame, Outcome):
                        frame = await self._waiting(conn, handle(context, client, frame))
                    self._answer(conn, frame)
            except ConnectionClosed:
                pass
            finally:
                if pipeline is not None:
                    await pipeline.settle()
                await self.detach(conn)
                log.info(
                    "disconnected",
                    extra={
                        "event": "disconnect",
                        "close_code": ws.close_code,
                        "duration_s": round(time.monotonic() - started, 3),
                    },
                )
        finally:
            self._admission.release()

    async def _waiting(self, conn: Connection, work: Awaitable[_T]) -> _T:
        """Await `work` in the receive loop: meanwhile the client's next frames, heartbeats
        too, wait unread for up to the request budget. That is not silence."""
        conn.last_heard = time.monotonic() + self._budget
        try:
            return await work
        finally:
            conn.last_heard = time.monotonic()

    def _answer(self, conn: Connection, outcome: Outcome) -> None:
        if outcome.reply is not None:
            self._metrics[FRAMES_OUT[events.frame_type(outcome.reply)]] += 1
            conn.send(outcome.reply)
        if outcome.close is not None:
            conn.close(outcome.close, outcome.reason)

    async def _admit(self, ws: ServerConnection) -> tuple[Connection, str] | None:
        """The pending-auth caps, authentication and the per-user caps: the connection and
        its client's address, or None once the socket was refused (and closed)."""
        address = self.address(ws)
        assert ws.request is not None
        token = bearer_token(ws.request.headers.get("Authorization"))
        forget_handshake(ws)
        if token is None:  # it will wait for an `auth` frame: the pending caps apply
            refused = self._admission.start_auth(address)
            if refused is not None:
                await ws.close(Close.TRY_AGAIN_LATER, refused)
                return None
        try:
            identity = await self._authenticate(ws, address, token)
        except ConnectionClosed:
            return None
        finally:
            if token is None:
                self._admission.end_auth(address)
        if identity is None:
            return None
        refused = self._admission.admit(identity.user_id, identity.session_id)
        if refused is not None:
            await ws.close(Close.TRY_AGAIN_LATER, refused)
            return None
        client = ClientState(
            f"{self._settings.presence.instance_id}.{secrets.token_hex(6)}",
            identity.user_id,
            identity.session_id,
            identity.token_id,
            identity.session,
            identity.expires_at,
        )
        # Every log line of this connection's task names it and its user (awaited, not a task:
        # the caller's context keeps them).
        logs.connection_id.set(client.connection_id)
        logs.user_id.set(str(client.user_id))
        limits = self._settings.limits
        conn = Connection(
            ws=ws,
            client=client,
            bucket=TokenBucket(limits.rate_limit, limits.rate_burst, time.monotonic()),
            send_limit=limits.send_buffer_limit,
            closer=self._close,
        )
        return conn, address

    def _greet(self, conn: Connection, address: str) -> None:
        """Attached: say so in the log, send `hello`, start the connection's deadlines; during
        a drain, send it away right after its `hello`."""
        settings, client = self._settings, conn.client
        log.info("connected", extra={"event": "connect", "address": address})
        conn.greet(
            events.hello(
                connection_id=client.connection_id,
                user_id=client.user_id,
                session_id=client.session_id,
                instance_id=settings.presence.instance_id,
                heartbeat_interval_ms=int(settings.presence.heartbeat_interval * 1000),
                lease_ms=int(settings.presence.lease_ttl * 1000),
                limits={
                    "max_frame_bytes": settings.http.max_frame_bytes,
                    "rate_limit": settings.limits.rate_limit,
                    "rate_burst": settings.limits.rate_burst,
                    "max_watched": settings.presence.max_watched,
                    "max_message_bytes": settings.limits.max_message_bytes,
                },
            )
        )
        self._silence.add(conn)
        self._expiry.track(conn)
        if self.draining:  # attached while a drain runs: it skipped this connection
            self._send_away(conn)

    # Authentication

    async def _authenticate(
        self, ws: ServerConnection, address: str, token: str | None
    ) -> Identity | None:
        if token is None:
            token = await self._token_from_first_frame(ws)
            if token is None:
                return None
        try:
            async with asyncio.timeout(self._connect_bound):
                return await self._authenticator.authenticate(token)
        except AuthError as exc:
            self._metrics["auth_failures"] += 1
            log.info(
                "authentication refused: %s",
                exc,
                extra={"event": "auth_failure", "reason": str(exc), "address": address},
            )
            await ws.send(events.error(ErrorCode.UNAUTHENTICATED, str(exc)).decode())
            await ws.close(Close.UNAUTHENTICATED, "unauthenticated")
        except (CacheUnavailable, TimeoutError) as exc:
            # Never admit anyone unchecked: the client retries, maybe on another instance.
            log.warning("auth: session cache unavailable: %s", exc or "no answer in time")
            await ws.close(Close.TRY_AGAIN_LATER, "session store unavailable")
        return None

    async def _token_from_first_frame(self, ws: ServerConnection) -> str | None:
        """Browsers cannot set headers: the first frame must be `auth`, within the deadline."""
        try:
            raw = await asyncio.wait_for(ws.recv(), self._settings.auth.auth_timeout)
        except TimeoutError:
            await ws.close(Close.UNAUTHENTICATED, "authentication timed out")
            return None
        try:
            frame = decode(raw)
        except ProtocolError as exc:
            await ws.send(events.error(exc.code, exc.message, exc.request_id).decode())
            await ws.close(Close.UNAUTHENTICATED, "first frame must be auth")
            return None
        if not isinstance(frame, frames.Auth):
            await ws.send(
                events.error(
                    ErrorCode.UNAUTHENTICATED, "first frame must be auth", frame.id
                ).decode()
            )
            await ws.close(Close.UNAUTHENTICATED, "first frame must be auth")
            return None
        return frame.token

    # Attach and detach

    async def attach(self, conn: Connection) -> bool:
        """Register, subscribe (confirmed), read memberships, take the lease; False when a
        backend failed or was too slow (the caller refuses the connection)."""
        client = conn.client
        channel = self._hub.add(conn)
        try:
            async with asyncio.timeout(self._connect_bound):
                if channel is not None:
                    # Subscribed before the store is read: a conversation created in between
                    # reaches this user through the channel, not through the read.
                    await self._hub.confirmed(channel, self._connect_bound)
                    memberships = await self._conversations.memberships(client.user_id)
                    self._hub.set_memberships(client.user_id, memberships)
                await self._presence.attach(client)
        except _BACKEND_ERRORS as exc:
            log.warning("attach failed for %s: %s", conn.id, exc or "no answer in time")
            return False
        self._metrics["connections_opened"] += 1
        return True

    async def detach(self, conn: Connection) -> None:
        """Stop typing and cut the lease to the grace: independent steps, each bounded, so
        one failing never skips the other."""
        conn.state = ConnState.CLOSING
        last_local = self._hub.remove(conn)
        client = conn.client
        await asyncio.gather(
            self._bounded("typing cleanup", conn, self._typing.clear_all(client)),
            self._bounded("presence detach", conn, self._presence.detach(client, last_local)),
        )

    async def _bounded(self, what: str, conn: Connection, work: Awaitable[None]) -> None:
        try:
            async with asyncio.timeout(self._budget):
                await work
        except _BACKEND_ERRORS as exc:
            # The lease expires by itself; the sweep announces the user offline.
            log.warning("%s of %s: Redis unavailable: %s", what, conn.id, exc or "timeout")
        except Exception:  # a cleanup step's edge: the others still run
            log.exception("%s of %s failed", what, conn.id)

    # Frames

    def _reject_flood(self, conn: Connection, now: float) -> None:
        self._metrics["rate_limited"] += 1
        if conn.rejected_at is None:
            conn.rejected_at = []
        if record_rejection(conn.rejected_at, now, self._settings.limits.rate_limit_close_after):
            conn.close(Close.RATE_LIMITED, "rate limited")
        else:
            conn.send(events.error(ErrorCode.RATE_LIMITED, "too many frames; slow down"))

    def _close(self, conn: Connection, code: Close, reason: str) -> None:
        self._metrics[key("closes", str(int(code)), code.name.lower())] += 1
        self._spawn(_close(conn.ws, code, reason))

    # Instance-wide jobs

    async def watch_deadlines(self) -> None:
        """Until cancelled: close connections silent for a whole lease, warn those whose token
        ends soon, end those whose token ended unrefreshed."""
        while True:
            await asyncio.sleep(_TICK)
            for conn in self._silence.due(time.monotonic()):
                conn.close(Close.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            for conn, kind in self._expiry.due(time.time()):
                if kind == EXPIRE:
                    self._metrics["tokens_expired"] += 1
                    conn.send(events.session_expired())
                    conn.close(Close.TOKEN_EXPIRED, "token expired")
                else:
                    conn.send(events.session_expiring(conn.client.expires_at))

    async def drain(self, window: float) -> None:
        """Close every connection 1012 after a `reconnect` event, spread evenly over `window`
        seconds in a random order, so a fleet restart causes no reconnect storm. New sockets
        are refused from the start (`draining`). Each client is told to come back within a
        fraction of the presence grace: its user never looks offline to watchers."""
        self.draining = True
        conns = list(self._hub.all_connections())
        random.shuffle(conns)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, conn in enumerate(conns):
            due = started + window * index / len(conns)
            if due - loop.time() > 0.005:  # the rest of this slot goes together
                await asyncio.sleep(due - loop.time())
            # One still attaching is sent away by `_greet`, after its `hello`: closed now, it
            # would get neither `hello` nor `reconnect`.
            if conn.state is ConnState.OPEN and conn.greeted:
                self._send_away(conn)

    def _send_away(self, conn: Connection) -> None:
        """`reconnect` with a jitter inside a third of the presence grace, then close 1012."""
        back_within_ms = max(1, int(self._settings.presence.grace * 1000 / 3))
        conn.send(events.reconnect(random.randint(0, back_within_ms)))
        conn.close(Close.SERVICE_RESTART, "service restart")


async def _close(ws: ServerConnection, code: Close, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(int(code), reason)

"""The Python client for apps and bots: one resilient connection, the JavaScript SDK's twin.

It authenticates (a token or a `get_token` coroutine, refreshed in band on `session.expiring`),
beats, notices a dead connection, reconnects with full-jitter backoff (honouring `reconnect
{after_ms}`, never reconnecting with a refused token), resumes with nothing missed (watches
renewed, every conversation caught up from its last seq, events in seq order, never twice, a
live gap filled from history), keeps unsent messages in an outbox (in memory or a file) sent
again with the same `client_msg_id` after a reconnect or a restart, and sends delivered receipts
for what it hands the app.

    client = Client(urls=["ws://127.0.0.1:8080/ws"], get_token=fetch_token, storage=FileStorage(p))
    client.on("message", lambda m: print(m["content"]))
    await client.connect()
    outgoing = client.send(conversation_id, "hello")
    stored = await outgoing.sent
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway.client import GatewayError

__all__ = [
    "Client",
    "FileStorage",
    "GatewayError",
    "MemoryStorage",
    "Outgoing",
    "State",
    "Storage",
    "backoff_delay",
]

log = logging.getLogger(__name__)

State = Literal["disconnected", "connecting", "connected", "closed"]
Frame = dict[str, Any]
Listener = Callable[[Any], None]
TokenSource = Callable[[], Awaitable[str | None]]

_TOKEN_REFUSED = {4001, 4002, 4003}
_TRANSIENT = {"unavailable", "rate_limited", "internal", "timeout", "disconnected"}
_PAGE = 100


def backoff_delay(attempt: int, min_s: float = 0.5, max_s: float = 20.0) -> float:
    """Full jitter: uniform in [0, min(max, min * 2^attempt)], never below `min_s`."""
    ceiling = min(max_s, min_s * 2 ** min(attempt, 30))
    return max(min_s, random.uniform(0, ceiling))


class Storage(Protocol):
    """Where the outbox and the positions outlive the process."""

    def load(self) -> dict[str, Any]: ...
    def save(self, state: dict[str, Any]) -> None: ...


class MemoryStorage:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self.state))
        return copy

    def save(self, state: dict[str, Any]) -> None:
        self.state = json.loads(json.dumps(state))


class FileStorage:
    """A JSON file, replaced atomically (write, fsync, rename) on every change."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = orjson.loads(self.path.read_bytes())
            return loaded
        except FileNotFoundError:
            return {}

    def save(self, state: dict[str, Any]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(orjson.dumps(state))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)


@dataclass
class Outgoing:
    """A queued message: its key, and the stored message once the gateway acknowledged it."""

    client_msg_id: str
    sent: asyncio.Future[Frame]


@dataclass
class _Timeline:
    """One conversation's position: what was handed to the app, what waits behind a gap."""

    last_seq: int | None
    last_message_id: str | None = None
    held: dict[int, Frame] = field(default_factory=dict)
    filling: asyncio.Task[None] | None = None
    gap_timer: asyncio.TimerHandle | None = None


class Client:
    """See the module's docstring. Events (`on(name, listener)`): `state`, `connected`,
    `resumed`, `message`, `message.deleted`, `message.status`, `message.read`, `presence`,
    `typing`, `unread`, `conversation.added`, `sent`, `send.failed`, `resync`, `error`,
    `event` (every server event)."""

    def __init__(
        self,
        *,
        urls: str | Sequence[str],
        token: str | None = None,
        get_token: TokenSource | None = None,
        storage: Storage | None = None,
        request_timeout: float = 10.0,
        min_reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 20.0,
        gap_wait: float = 0.4,
        typing_throttle: float = 3.0,
        auto_delivered: bool = True,
        connect: Callable[[str], Awaitable[ClientConnection]] | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one URL")
        self.token = token
        self._get_token = get_token
        self._storage = storage or MemoryStorage()
        self.request_timeout = request_timeout
        self._min_delay, self._max_delay = min_reconnect_delay, max_reconnect_delay
        self._gap_wait = gap_wait
        self._typing_throttle = typing_throttle
        self._auto_delivered = auto_delivered
        self._connect = connect or _open
        self.state: State = "disconnected"
        self.hello: Frame | None = None
        self.user_id: str | None = None
        self.presence: dict[str, Frame] = {}
        self.unread: dict[str, int] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._connected = asyncio.Event()
        self._timelines: dict[str, _Timeline] = {}
        self._watched: set[str] = set()
        self._typing_sent: dict[str, float] = {}
        self._typing_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._delivered_queue: dict[str, Frame] = {}
        self._waiters: dict[str, asyncio.Future[Frame]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._next_delay: float | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_heard = time.monotonic()
        kept = self._storage.load()
        self._outbox: list[Frame] = list(kept.get("outbox", []))
        for conversation_id, seq in kept.get("positions", {}).items():
            self._timeline(conversation_id, int(seq))

    # ---- events ----------------------------------------------------------------------------

    def on(self, name: str, listener: Listener) -> Callable[[], None]:
        """Call `listener(payload)` on every `name` event; returns the way to stop."""
        self._listeners.setdefault(name, []).append(listener)
        return lambda: self._listeners[name].remove(listener)

    def _emit(self, name: str, payload: Any) -> None:
        for listener in list(self._listeners.get(name, ())):
            try:
                listener(payload)
            except Exception:  # an app's listener must not break the client
                log.exception("listener for %s failed", name)

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def _set_state(self, state: State, **detail: Any) -> None:
        if self.state == state:
            return
        self.state = state
        if state in ("connected", "closed"):  # waiters wake to go on, or to hear it closed
            self._connected.set()
        else:
            self._connected.clear()
        self._emit("state", {"state": state, **detail})

    # ---- lifecycle -------------------------------------------------------------------------

    async def connect(self, timeout: float | None = None) -> None:
        """Start the connection (kept up until `close`); returns on the first `hello`."""
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise())
        await self._wait_connected(timeout or self.request_timeout)

    async def close(self) -> None:
        """Close for good. The outbox stays in storage for the next client."""
        self._set_state("closed", code=1000, reason="client closed")
        self._fail_pending("closed", "the client was closed")
        for task in [self._supervisor, *self._tasks]:  # the outbox flush is one of the tasks
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for timer in self._typing_timers.values():
            timer.cancel()
        for timeline in self._timelines.values():
            if timeline.gap_timer:
                timeline.gap_timer.cancel()
        self._save()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _supervise(self) -> None:
        attempt, index = 0, 0
        while not self.closed:
            self._set_state("connecting")
            code, reason = await self._session(self.urls[index % len(self.urls)])
            if code == 0:
                attempt = 0  # it was up: the next failure starts the backoff again
            if self.closed:
                return
            if code in _TOKEN_REFUSED:
                self.token = None
                if self._get_token is None:
                    self._set_state("closed", code=code, reason=reason)
                    self._fail_pending("closed", reason)
                    return
            self._set_state("disconnected", code=code, reason=reason)
            index += 1  # a failing or draining instance: try the next URL
            delay = self._next_delay
            self._next_delay = None
            if delay is None:
                delay = backoff_delay(attempt, self._min_delay, self._max_delay)
                attempt += 1
            await asyncio.sleep(delay)

    async def _session(self, url: str) -> tuple[int, str]:
        """One connection from open to close: the close code and reason."""
        token = self.token
        if token is None and self._get_token is not None:
            try:
                token = self.token = await self._get_token()
            except Exception as exc:
                self._emit("error", exc)
        if not token:
            return 4001, "no token"
        try:
            ws = await self._connect(url)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            return 1006, str(exc)[:120]
        self._ws = ws
        beating: asyncio.Task[None] | None = None
        try:
            await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), self.request_timeout))
            if hello.get("type") != "hello":
                self._emit("error", GatewayError(hello.get("code", "?"), hello.get("message", "")))
                await asyncio.wait_for(ws.wait_closed(), self.request_timeout)
            else:
                self._welcome(hello)
                beating = asyncio.create_task(self._beat(ws, hello))
                async for raw in ws:
                    self._receive(raw)
        except (ConnectionClosed, TimeoutError, OSError):
            pass
        finally:
            self._ws = None
            if not self.closed:
                self._connected.clear()
            if beating is not None:
                beating.cancel()
            self._fail_pending("disconnected", "the connection closed")
            await ws.close()
        if ws.close_code is None:
            return 1006, "connection lost"
        return ws.close_code, ws.close_reason or ""

    async def _beat(self, ws: ClientConnection, hello: Frame) -> None:
        """A heartbeat every interval, one at a time; silence for the lease means dead."""
        interval, lease = hello["heartbeat_interval_ms"] / 1000, hello["lease_ms"] / 1000
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_heard > lease:
                await ws.close(4000, "no answer from the gateway within the lease")
                return
            with contextlib.suppress(GatewayError):
                await self.request("heartbeat", timeout=lease)

    def _welcome(self, hello: Frame) -> None:
        self.hello = hello
        self.user_id = hello["user_id"]
        self._last_heard = time.monotonic()
        self._set_state("connected", hello=hello)
        self._emit("connected", hello)
        self._spawn(self._resume())

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        """A background step's failure (a catch-up cut by a lost connection) is reported as
        an `error` event, never left unretrieved; the next hello resumes anyway."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._emit("error", task.exception())

    # ---- frames ----------------------------------------------------------------------------

    def _receive(self, raw: str | bytes) -> None:
        self._last_heard = time.monotonic()
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._emit("error", ValueError("the gateway sent a frame that is not JSON"))
            return
        waiter = self._pending.pop(frame.get("id"), None) if "id" in frame else None
        if waiter is not None:
            if not waiter.done():
                if frame.get("type") == "error":
                    waiter.set_exception(_error(frame))
                else:
                    waiter.set_result(frame)
            return
        self._event(frame)

    def _event(self, frame: Frame) -> None:
        self._emit("event", frame)
        kind = frame.get("type")
        if kind == "message.new":
            self._accept(frame["message"], live=True)
        elif kind == "presence":
            self._note_presence(frame)
        elif kind == "typing":
            self._note_typing(frame)
        elif kind == "conversation.added":
            self._timeline(frame["conversation"]["id"], 0)
            self._emit("conversation.added", frame["conversation"])
        elif kind == "message.read":
            if frame["user_id"] == self.user_id:
                self._set_unread(frame["conversation_id"], 0)
            self._emit("message.read", frame)
        elif kind == "session.expiring":
            self._spawn(self._refresh_token())
        elif kind == "reconnect":
            self._next_delay = max(0.0, float(frame.get("after_ms", 0)) / 1000)
        elif kind == "resync":
            self._emit("resync", frame)
            self._spawn(self._recover(query=True))
        elif kind == "error":
            self._emit("error", _error(frame))
        else:
            self._emit(str(kind), frame)

    # ---- requests --------------------------------------------------------------------------

    async def request(self, frame_type: str, timeout: float | None = None, **fields: Any) -> Frame:
        """Send a request and return its ack; made while disconnected, it waits for the
        connection within its timeout. Raises GatewayError with the protocol's code (or
        `timeout`, `disconnected`, `closed`)."""
        budget = timeout or self.request_timeout
        deadline = time.monotonic() + budget
        await self._wait_connected(budget)
        ws = self._ws
        if ws is None:
            raise GatewayError("disconnected", f"{frame_type}: not connected")
        request_id = f"r{next(self._ids)}"
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        try:
            await ws.send(orjson.dumps({"type": frame_type, "id": request_id, **fields}).decode())
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await waiter
        except TimeoutError:
            raise GatewayError("timeout", f"{frame_type}: no answer in {budget} s") from None
        except ConnectionClosed:
            raise GatewayError("disconnected", f"{frame_type}: connection closed") from None
        finally:
            self._pending.pop(request_id, None)
            if waiter.done() and not waiter.cancelled():
                # Failed by the lost connection while the send itself was failing: the caller
                # got that error; the waiter's copy is read so it is not reported as lost.
                waiter.exception()

    async def _wait_connected(self, timeout: float) -> None:
        if self.closed:
            raise GatewayError("closed", "the client is closed")
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            raise GatewayError("timeout", f"not connected within {timeout} s") from None
        if self.closed:
            raise GatewayError("closed", "the client is closed")

    def _fail_pending(self, code: str, message: str) -> None:
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(GatewayError(code, message))
        self._pending.clear()

    async def _refresh_token(self) -> None:
        if self._get_token is None:
            return
        try:
            token = await self._get_token()
            if token:
                self.token = token
                await self.request("auth", token=token)
                self._emit("token.refreshed", {})
        except Exception as exc:
            self._emit("error", exc)

    # ---- resume ----------------------------------------------------------------------------

    async def _resume(self) -> None:
        try:
            await self._recover(query=False)
            self._emit("resumed", {"conversations": len(self._timelines)})
        except GatewayError as exc:
            self._emit("error", exc)
        self._flush()

    async def _recover(self, *, query: bool) -> None:
        """Watch again (or re-read presence after a resync) and catch every known
        conversation up from its last seq."""
        ids = sorted(self._watched)
        for start in range(0, len(ids), 1000):
            kind = "presence.query" if query else "presence.subscribe"
            ack = await self.request(kind, user_ids=ids[start : start + 1000])
            for value in ack["presence"].values():
                self._note_presence(value)
        known = [cid for cid, t in self._timelines.items() if t.last_seq is not None]
        await asyncio.gather(*(self.catch_up(cid) for cid in known))

    async def catch_up(self, conversation_id: str) -> None:
        """Read what followed the conversation's last seq from the store, page after page."""
        timeline = self._timeline(conversation_id)
        if timeline.filling is None or timeline.filling.done():
            timeline.filling = asyncio.ensure_future(self._fill(conversation_id, timeline))
        await asyncio.shield(timeline.filling)

    async def _fill(self, conversation_id: str, timeline: _Timeline) -> None:
        if timeline.gap_timer:
            timeline.gap_timer.cancel()
            timeline.gap_timer = None
        try:
            while True:
                ack = await self.request(
                    "messages.list",
                    conversation_id=conversation_id,
                    after_seq=timeline.last_seq or 0,
                    limit=_PAGE,
                )
                for message in ack["messages"]:
                    self._accept(message, live=False)
                if not ack["has_more"]:
                    break
        except GatewayError as exc:
            if exc.code in ("forbidden", "not_found"):  # left or gone: nothing to follow
                self._timelines.pop(conversation_id, None)
                self._save()
                return
            raise
        # The store had everything up to now: what is still held lies past deleted messages.
        self._release(timeline, skip_gaps=True)

    def _timeline(self, conversation_id: str, last_seq: int | None = None) -> _Timeline:
        timeline = self._timelines.get(conversation_id)
        if timeline is None:
            timeline = self._timelines[conversation_id] = _Timeline(last_seq)
        elif timeline.last_seq is None and last_seq is not None:
            timeline.last_seq = last_seq
        return timeline

    def _accept(self, message: Frame, *, live: bool) -> None:
        """Hand a message to the app once, in seq order; hold it behind a missing one."""
        conversation_id, seq = message["conversation_id"], message["seq"]
        timeline = self._timeline(conversation_id)
        if timeline.last_seq is None:
            timeline.last_seq = seq - 1
        if seq <= timeline.last_seq or seq in timeline.held:
            return
        if seq != timeline.last_seq + 1:
            timeline.held[seq] = message
            if live and timeline.gap_timer is None and not _running(timeline.filling):
                # The gateway fills its own gaps within 250 ms; only one that stays is read.
                timeline.gap_timer = asyncio.get_running_loop().call_later(
                    self._gap_wait, self._gap_stayed, conversation_id
                )
            return
        self._deliver(timeline, message)
        self._release(timeline, skip_gaps=False)

    def _gap_stayed(self, conversation_id: str) -> None:
        timeline = self._timelines.get(conversation_id)
        if timeline is None:
            return
        timeline.gap_timer = None
        if timeline.held and self.state == "connected":
            self._spawn(self.catch_up(conversation_id))

    def _release(self, timeline: _Timeline, *, skip_gaps: bool) -> None:
        while timeline.held:
            assert timeline.last_seq is not None
            following = timeline.held.pop(timeline.last_seq + 1, None)
            if following is not None:
                self._deliver(timeline, following)
            elif skip_gaps:
                timeline.last_seq = min(timeline.held) - 1
            else:
                return
        if timeline.gap_timer:
            timeline.gap_timer.cancel()
            timeline.gap_timer = None

    def _deliver(self, timeline: _Timeline, message: Frame) -> None:
        timeline.last_seq = message["seq"]
        timeline.last_message_id = message["id"]
        self._save()
        own = message["sender_id"] == self.user_id
        conversation_id = message["conversation_id"]
        if not own:
            self._set_unread(conversation_id, self.unread.get(conversation_id, 0) + 1)
            self._clear_typing(conversation_id, message["sender_id"])
        self._emit("message", message)
        if not own and self._auto_delivered:
            self._queue_delivered(message)

    def _queue_delivered(self, message: Frame) -> None:
        """One receipt per conversation for a burst: the highest seq (a watermark)."""
        conversation_id = message["conversation_id"]
        queued = self._delivered_queue.get(conversation_id)
        if queued is not None and queued["seq"] >= message["seq"]:
            return
        self._delivered_queue[conversation_id] = message
        if queued is None:
            self._spawn(self._send_delivered(conversation_id))

    async def _send_delivered(self, conversation_id: str) -> None:
        await asyncio.sleep(0.05)
        latest = self._delivered_queue.pop(conversation_id)
        with contextlib.suppress(GatewayError):  # the next message's receipt covers it
            await self.request(
                "message.delivered", conversation_id=conversation_id, message_id=latest["id"]
            )

    # ---- messages --------------------------------------------------------------------------

    def send(
        self,
        conversation_id: str,
        content: str,
        *,
        content_type: str = "text",
        client_msg_id: str | None = None,
    ) -> Outgoing:
        """Queue a message; returns at once. It stays in the outbox (and its storage) until
        acknowledged, sent again with the same `client_msg_id` after a reconnect or restart."""
        key = client_msg_id or "m-" + secrets.token_hex(16)
        self._outbox.append(
            {
                "client_msg_id": key,
                "conversation_id": conversation_id,
                "content": content,
                "content_type": content_type,
                "queued_at": time.time(),
            }
        )
        self._save()
        sent: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiters[key] = sent
        self._flush()
        return Outgoing(key, sent)

    def pending_messages(self) -> list[Frame]:
        return [dict(entry) for entry in self._outbox]

    def _flush(self) -> None:
        if self.state == "connected" and self._outbox and not _running(self._flushing):
            self._flushing = self._spawn(self._flush_outbox())

    async def _flush_outbox(self) -> None:
        while self._outbox and self.state == "connected":
            entry = self._outbox[0]
            fields = {k: v for k, v in entry.items() if k != "queued_at"}
            try:
                ack = await self.request("message.send", **fields)
            except GatewayError as exc:
                if exc.code in _TRANSIENT:
                    if self.state == "connected":
                        wait = exc.retry_after_ms / 1000 if exc.retry_after_ms else 1.0
                        asyncio.get_running_loop().call_later(wait, self._flush)
                    return
                self._outbox.pop(0)
                self._save()
                self._settle(entry, None, exc)
                continue
            self._outbox.pop(0)
            self._save()  # out of storage before anyone hears of it
            self._settle(entry, ack, None)

    def _settle(self, entry: Frame, ack: Frame | None, error: GatewayError | None) -> None:
        key = entry["client_msg_id"]
        waiter = self._waiters.pop(key, None)
        if error is not None:
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # reported through "send.failed" too: never unretrieved
            self._emit("send.failed", {"client_msg_id": key, "entry": entry, "error": error})
            return
        assert ack is not None
        self._accept(ack["message"], live=True)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack["message"])
        self._emit(
            "sent", {"client_msg_id": key, "message": ack["message"], "created": ack["created"]}
        )

    async def history(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> tuple[list[Frame], bool]:
        """A page of messages and whether more lie beyond it. The newest page (no seq given)
        moves the conversation's position up to its last message: the app shows it itself."""
        fields: dict[str, Any] = {"conversation_id": conversation_id, "limit": limit}
        if before_seq is not None:
            fields["before_seq"] = before_seq
        if after_seq is not None:
            fields["after_seq"] = after_seq
        ack = await self.request("messages.list", **fields)
        messages: list[Frame] = ack["messages"]
        if before_seq is None and after_seq is None:
            newest = messages[-1] if messages else None
            timeline = self._timeline(conversation_id, newest["seq"] if newest else 0)
            if newest is not None and (timeline.last_seq or 0) <= newest["seq"]:
                timeline.last_seq, timeline.last_message_id = newest["seq"], newest["id"]
                timeline.held = {s: m for s, m in timeline.held.items() if s > newest["seq"]}
                self._release(timeline, skip_gaps=False)
                self._save()
        return messages, bool(ack["has_more"])

    async def mark_read(self, conversation_id: str, message_id: str | None = None) -> Frame | None:
        """Read receipt up to `message_id` (default: the last message handed to the app)."""
        timeline = self._timelines.get(conversation_id)
        target = message_id or (timeline.last_message_id if timeline else None)
        if target is None:
            return None
        ack = await self.request("message.read", conversation_id=conversation_id, message_id=target)
        self._set_unread(conversation_id, 0)
        return ack

    async def create_conversation(
        self, member_ids: Sequence[str], *, kind: str = "group", name: str = ""
    ) -> Frame:
        ack = await self.request(
            "conversation.create", kind=kind, member_ids=list(member_ids), name=name
        )
        self._timeline(ack["conversation"]["id"], 0 if ack["created"] else None)
        return ack

    async def conversations(self, limit: int = 50) -> Frame:
        ack = await self.request("conversations.list", limit=limit)
        for item in ack["conversations"]:
            self._timeline(item["id"])
            self.unread[item["id"]] = item["unread_count"]
        return ack

    def positions(self) -> dict[str, int]:
        """The last seq handed to the app per conversation (kept in storage too)."""
        return {cid: t.last_seq for cid, t in self._timelines.items() if t.last_seq is not None}

    def _set_unread(self, conversation_id: str, count: int) -> None:
        if self.unread.get(conversation_id) == count:
            return
        self.unread[conversation_id] = count
        self._emit(
            "unread",
            {
                "conversation_id": conversation_id,
                "count": count,
                "total": sum(self.unread.values()),
            },
        )

    def _save(self) -> None:
        try:
            self._storage.save({"outbox": self._outbox, "positions": self.positions()})
        except OSError as exc:
            self._emit("error", exc)

    # ---- presence and typing ---------------------------------------------------------------

    async def watch(self, user_ids: Sequence[str]) -> Frame | None:
        self._watched.update(user_ids)
        if self.state != "connected":
            return None
        ack = await self.request("presence.subscribe", user_ids=list(user_ids))
        for value in ack["presence"].values():
            self._note_presence(value)
        return ack

    async def unwatch(self, user_ids: Sequence[str]) -> Frame | None:
        self._watched.difference_update(user_ids)
        if self.state != "connected":
            return None
        return await self.request("presence.unsubscribe", user_ids=list(user_ids))

    def _note_presence(self, frame: Frame) -> None:
        value = {
            "user_id": frame["user_id"],
            "status": frame["status"],
            "last_seen": frame.get("last_seen"),
        }
        if self.presence.get(frame["user_id"]) != value:
            self.presence[frame["user_id"]] = value
            self._emit("presence", value)

    async def typing(self, conversation_id: str) -> None:
        """Say the user is typing: at most one frame per throttle window."""
        now = time.monotonic()
        if now - self._typing_sent.get(conversation_id, -1e9) < self._typing_throttle:
            return
        self._typing_sent[conversation_id] = now
        await self._send_quietly({"type": "typing.start", "conversation_id": conversation_id})

    async def stop_typing(self, conversation_id: str) -> None:
        if self._typing_sent.pop(conversation_id, None) is not None:
            await self._send_quietly({"type": "typing.stop", "conversation_id": conversation_id})

    async def _send_quietly(self, frame: Frame) -> None:
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(orjson.dumps(frame).decode())

    def _note_typing(self, frame: Frame) -> None:
        key = (frame["conversation_id"], frame["user_id"])
        timer = self._typing_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        typing = frame["state"] == "start"
        if typing:
            # Expire it here too: a stop lost on the way never leaves a stuck indicator.
            self._typing_timers[key] = asyncio.get_running_loop().call_later(
                frame["expires_in_ms"] / 1000, self._clear_typing, *key
            )
        self._emit("typing", {"conversation_id": key[0], "user_id": key[1], "typing": typing})

    def _clear_typing(self, conversation_id: str, user_id: str) -> None:
        timer = self._typing_timers.pop((conversation_id, user_id), None)
        if timer is None:
            return
        timer.cancel()
        self._emit(
            "typing", {"conversation_id": conversation_id, "user_id": user_id, "typing": False}
        )


def _running(task: asyncio.Task[Any] | None) -> bool:
    return task is not None and not task.done()


def _error(frame: Frame) -> GatewayError:
    return GatewayError(
        str(frame.get("code")), str(frame.get("message", "")), frame.get("retry_after_ms")
    )


async def _open(url: str) -> ClientConnection:
    return await ws_connect(
        url, open_timeout=5, compression=None, ping_interval=None, max_size=None
    )

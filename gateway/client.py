"""A small asyncio client for the gateway protocol (tests, load tests, bots).

async with await GatewayClient.connect("ws://127.0.0.1:8080/ws", token) as client:
    ack = await client.request("presence.subscribe", user_ids=[str(friend)])
    event = await client.next_event("presence")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from gateway.errors import Error

__all__ = ["GatewayClient", "GatewayError"]


class GatewayError(Error):
    """The gateway answered a request with an `error` frame."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        """With `rate_limited`: when to try again."""


class GatewayClient:
    """One connection. Requests await their `ack`/`error` by id; other frames queue as events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        use_header: bool = True,
        origin: str | None = None,
        timeout: float = 5.0,
        auto_heartbeat: bool = True,
    ) -> GatewayClient:
        """Connect and authenticate (header, or `auth` frame); returns once `hello` arrived.

        With `auto_heartbeat`, a heartbeat goes out every `heartbeat_interval_ms` of `hello`.

        Raises:
            GatewayError: the gateway refused the token.
            websockets.ConnectionClosed / InvalidStatus: the connection was refused or closed.
        """
        headers = {"Authorization": f"Bearer {token}"} if use_header else {}
        ws = await ws_connect(
            url,
            additional_headers=headers,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=timeout,
            compression=None,
            ping_interval=None,
            max_size=None,
        )
        client = cls(ws)
        if not use_header:
            await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        first = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if first.get("type") == "error":
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), timeout)
            raise GatewayError(first["code"], first["message"])
        client.hello = first
        client._reader = asyncio.create_task(client._read())
        if auto_heartbeat:
            client._beater = asyncio.create_task(client._beat(first["heartbeat_interval_ms"]))
        return client

    async def _beat(self, interval_ms: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval_ms / 1000)
                await self.ws.send('{"type":"heartbeat"}')

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                request_id = frame.get("id")
                waiter = self._pending.pop(request_id, None) if request_id else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame)
                elif frame.get("type") != "heartbeat_ack":
                    self.events.put_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("connection closed"))

    async def send(self, frame_type: str, **fields: Any) -> None:
        """Send a frame without waiting for an answer."""
        await self.ws.send(orjson.dumps({"type": frame_type, **fields}).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def request(self, frame_type: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a frame with an id and return its `ack` (or `heartbeat_ack`).

        Raises:
            GatewayError: the answer was an `error` frame.
        """
        request_id = f"r{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        await self.ws.send(orjson.dumps({"type": frame_type, "id": request_id, **fields}).decode())
        answer = await asyncio.wait_for(waiter, timeout)
        if answer.get("type") == "error":
            raise GatewayError(answer["code"], answer["message"])
        return answer

    async def next_event(
        self, frame_type: str | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """The next queued frame (of `frame_type`, skipping others); TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.events.get()
                if frame_type is None or frame.get("type") == frame_type:
                    return frame

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the connection to end; the close code the server sent."""
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        for task in (self._beater, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

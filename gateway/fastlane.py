"""The hot path's Redis connection: typing scripts, pipelined with no per-call machinery.

Every client typing event is one EVALSHA (the script also publishes). redis-py spends more Python
per command than the rest of the event's handling, so these calls go through one connection of
their own: hiredis packs each command and parses the replies, commands issued in the same loop
iteration leave in one write, any number are in flight, and replies resolve their callers in
order. It offers only what `caches.Script` needs: `evalsha` and `script_load`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.resp import open_connection, pack

__all__ = ["FastLane"]

log = logging.getLogger(__name__)

_BACKOFF_CAP = 2.0


class FastLane:
    """Run `run()` in the owner's task group; calls fail fast while it is disconnected."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self._url = url
        self._timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self._connected = asyncio.Event()

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return await self._call("EVALSHA", sha, numkeys, *args)

    async def script_load(self, source: str) -> str:
        return str(await self._call("SCRIPT", "LOAD", source))

    async def _call(self, *args: Any) -> Any:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise RedisConnectionError("Redis connection (fast lane) is down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._outgoing.append(pack(*args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, []
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(outgoing))

    async def run(self) -> None:
        """Keep the connection up and route replies to callers, until cancelled."""
        backoff = 0.05
        while True:
            try:
                reader, writer = await open_connection(self._url, self._timeout)
            except (OSError, TimeoutError, RedisError) as exc:
                log.warning("fast lane: cannot connect to Redis: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(_BACKOFF_CAP, backoff * 2)
                continue
            backoff = 0.05
            self._writer = writer
            try:
                await self._read(reader)
            except (OSError, TimeoutError, RedisError) as exc:
                log.warning("fast lane: Redis connection lost: %s", exc)
            except Exception:  # the task's edge: a protocol surprise; reconnect
                log.exception("fast lane: unexpected failure; reconnecting")
            finally:
                self._writer = None
                writer.close()
                self._fail_pending()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(encoding="utf-8")
        waiters = self._waiters
        while True:
            if waiters:
                # Something is owed: a server that stays silent this long is hung.
                try:
                    data = await asyncio.wait_for(reader.read(1 << 16), self._timeout)
                except TimeoutError:
                    raise RedisTimeoutError("Redis did not answer (fast lane)") from None
            else:
                data = await reader.read(1 << 16)
            if not data:
                raise RedisConnectionError("Redis closed the connection (fast lane)")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if not waiters:
                    continue
                waiter = waiters.popleft()
                if waiter.done():
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    text = str(reply)
                    error = (
                        NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
                    )
                    waiter.set_exception(error)
                else:
                    waiter.set_result(reply)

    def _fail_pending(self) -> None:
        self._outgoing.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError("Redis connection lost (fast lane)"))

"""A minimal Redis pub/sub connection: commands packed and replies parsed by hiredis.

redis-py's PubSub spends tens of microseconds of Python per message; a gateway receives every
event of every channel it serves, so this reader does the least possible work per message and
hands each read's `(channel, payload)` pairs straight to a callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import hiredis

from gateway.resp import open_connection, pack

__all__ = ["Subscriber", "SubscriberClosed"]


class SubscriberClosed(Exception):
    """The pub/sub connection ended (server gone, probe forced it, or closed)."""


class Subscriber:
    """One connection in subscribed mode; `run` reads until the connection ends."""

    def __init__(
        self,
        url: str,
        on_messages: Callable[[list[tuple[bytes, bytes]]], None],
        timeout: float = 2.0,
    ) -> None:
        self._url = url
        self._on_messages = on_messages
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open and authenticate; raises OSError / TimeoutError / redis.ConnectionError."""
        self._reader, self._writer = await open_connection(self._url, self._timeout)

    def subscribe(self, channels: Iterable[str]) -> None:
        names = list(channels)
        if names and self._writer is not None and not self._writer.is_closing():
            self._writer.write(pack("SUBSCRIBE", *names))

    def unsubscribe(self, channels: Iterable[str]) -> None:
        names = list(channels)
        if names and self._writer is not None and not self._writer.is_closing():
            self._writer.write(pack("UNSUBSCRIBE", *names))

    async def run(self) -> None:
        """Deliver messages until the connection ends, then raise SubscriberClosed."""
        assert self._reader is not None
        parser = hiredis.Reader()
        deliver = self._on_messages
        read = self._reader.read
        while True:
            data = await read(1 << 16)
            if not data:
                raise SubscriberClosed("Redis closed the pub/sub connection")
            parser.feed(data)
            batch: list[tuple[bytes, bytes]] = []
            while (reply := parser.gets()) is not False:
                if isinstance(reply, list) and reply and reply[0] == b"message":
                    batch.append((reply[1], reply[2]))
                elif isinstance(reply, hiredis.ReplyError):
                    raise SubscriberClosed(f"Redis error on pub/sub: {reply}")
            if batch:
                deliver(batch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

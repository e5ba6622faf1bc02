"""A fault-injecting TCP proxy for the tests, after toxiproxy's toxics: put it between a gateway
and Redis or PostgreSQL (on loopback) and change what the wire does while traffic runs.

Toxics, on both directions of every connection, now and for connections made later:
- `latency(seconds)`: each chunk waits that long before it is forwarded (order kept);
- `blackhole()`: nothing is forwarded, connections stay open (a silently dead peer);
- `reset()`: every connection is cut with a TCP RST, and new ones too until cleared;
- `bandwidth(bytes_per_s)`: chunks are paced to that rate;
- `slice(size, delay)`: chunks leave in pieces of `size` bytes, `delay` apart.
`clear()` restores a clean wire (connections cut by `reset` stay cut: their peers reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["FaultProxy"]

_CHUNK = 1 << 16
_T = TypeVar("_T")


@dataclass
class _Toxics:
    latency: float = 0.0
    blackhole: bool = False
    reset: bool = False
    bytes_per_s: float = 0.0
    slice_size: int = 0
    slice_delay: float = 0.0


class FaultProxy:
    """The proxy runs on an event loop of its own, in a thread: the tests' own loop may block
    (starting a gateway waits for its ready line) while the gateway needs the wire."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._toxics = _Toxics()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.port = 0

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        self._abort_all()

    def _abort_all(self) -> None:
        for downstream, upstream in list(self._links):
            _abort(downstream)
            _abort(upstream)

    # Toxics

    def latency(self, seconds: float) -> None:
        self._toxics.latency = seconds

    def blackhole(self) -> None:
        self._toxics.blackhole = True

    def reset(self) -> None:
        self._toxics.reset = True
        self._loop.call_soon_threadsafe(self._abort_all)

    def bandwidth(self, bytes_per_s: float) -> None:
        self._toxics.bytes_per_s = bytes_per_s

    def slice(self, size: int, delay: float) -> None:
        self._toxics.slice_size, self._toxics.slice_delay = size, delay

    def clear(self) -> None:
        self._toxics = _Toxics()

    # The wire

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._toxics.reset:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _abort(writer)
            return
        link = (writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps.difference_update(pumps)
            self._links.discard(link)
            for end in link:
                end.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(_CHUNK):
                toxics = self._toxics
                if toxics.blackhole:
                    continue  # swallowed: the peer hears nothing, the connection stays open
                if toxics.latency:
                    await asyncio.sleep(toxics.latency)
                if toxics.bytes_per_s:
                    await asyncio.sleep(len(data) / toxics.bytes_per_s)
                if toxics.slice_size:
                    for start in range(0, len(data), toxics.slice_size):
                        writer.write(data[start : start + toxics.slice_size])
                        await writer.drain()
                        await asyncio.sleep(toxics.slice_delay)
                    continue
                writer.write(data)
                await writer.drain()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a RST (SO_LINGER 0), as a peer that crashed or a middlebox that gave up."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

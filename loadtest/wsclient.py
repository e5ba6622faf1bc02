"""A lean WebSocket client transport for load generation (asyncio.Protocol, no per-frame tasks).

The load generator shares a 2-core machine with the servers it measures, so it must cost far
less CPU per frame than they do: frames are parsed in `data_received` and handed to a callback.
Client frames use an all-zero masking key (the mask bit is set as RFC 6455 requires; XOR with
zero leaves the payload as is). Loopback targets only; not a general-purpose client.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import cast
from urllib.parse import urlsplit

__all__ = ["RawClient", "ignore", "open_client", "open_clients", "payload_length", "whole_frames"]

_ZERO_MASK = b"\x00\x00\x00\x00"


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", size)
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + struct.pack("!Q", size)
    return header + _ZERO_MASK + payload


def payload_length(buffer: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """The payload length of the frame whose second byte is at `at`, and where what follows its
    length field starts; None while the buffer ends inside that field."""
    length = buffer[at] & 0x7F
    at += 1
    if length < 126:
        return length, at
    size = 2 if length == 126 else 8
    if len(buffer) - at < size:
        return None
    return int.from_bytes(buffer[at : at + size], "big"), at + size


def whole_frames(buffer: bytes | bytearray, mask_size: int = 0) -> Iterator[tuple[int, int, int]]:
    """Each whole frame at the start of `buffer`, in order: its opcode, where its payload starts
    (after a masking key of `mask_size` bytes) and the payload's length. The caller drops what
    it read (up to the last payload's end) once done."""
    pos, size = 0, len(buffer)
    while size - pos >= 2:
        header = payload_length(buffer, pos + 1)
        if header is None:
            return
        length, start = header
        start += mask_size
        if size - start < length:
            return
        yield buffer[pos] & 0x0F, start, length
        pos = start + length


class RawClient(asyncio.Protocol):
    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during handshake: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status_line:
                self.upgraded.set_exception(ConnectionError(status_line.decode(errors="replace")))
                return
            self.upgraded.set_result(None)
        end = 0
        for opcode, start, length in whole_frames(buffer):
            end = start + length
            payload = bytes(buffer[start:end])
            if opcode == 1:
                self.on_message(payload)
            elif opcode == 9 and self.transport is not None:
                self.transport.write(_masked_frame(0xA, payload))
            elif opcode == 8:
                self.close()
        if end:
            del buffer[:end]

    def send(self, payload: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(_masked_frame(0x1, payload))

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.write(_masked_frame(0x8, struct.pack("!H", 1000)))
            self.transport.close()


async def open_client(
    url: str, token: str, on_message: Callable[[bytes], None], timeout: float = 30.0
) -> RawClient:
    """Connect to a loopback gateway with a Bearer token and wait for the 101."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load generator only targets loopback")
    loop = asyncio.get_running_loop()
    transport, client = await asyncio.wait_for(
        loop.create_connection(lambda: RawClient(on_message), host, port), timeout
    )
    client.transport = transport
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    transport.write(request.encode())
    await asyncio.wait_for(client.upgraded, timeout)
    return client


async def open_clients(
    url: str,
    tokens: list[str],
    concurrency: int,
    timeout: float,
    sinks: list[Callable[[bytes], None]] | None = None,
) -> tuple[list[RawClient | None], list[float]]:
    """A connection per token, at most `concurrency` opening at once: the clients in token order
    (None where the connect failed or timed out), and each successful connect's duration."""
    gate = asyncio.Semaphore(concurrency)
    durations: list[float] = []

    async def one(token: str, sink: Callable[[bytes], None]) -> RawClient | None:
        async with gate:
            started = time.perf_counter()
            try:
                client = await open_client(url, token, sink, timeout)
            except (OSError, TimeoutError, ConnectionError):
                return None
            durations.append(time.perf_counter() - started)
            return client

    chosen = sinks if sinks is not None else [ignore] * len(tokens)
    opened = await asyncio.gather(*(one(t, s) for t, s in zip(tokens, chosen, strict=True)))
    return list(opened), durations


def ignore(raw: bytes) -> None:
    """A sink for a client whose frames nobody reads."""

"""The floor of `bench.py fanout`: the least a Python process can do for each of its events,
to judge the gateway's cost against (`bench.py fanout --server floor`).

It speaks just enough WebSocket for the load generator and does nothing else: no
authentication (the bearer token is `user:room`, taken as it is), no validation, no throttle,
no state in Redis, no acks. A client frame becomes one `PUBLISH` of its event, framed once and
kept per (user, kind), on its room's channel; each instance writes what its subscription reads
to its local members of the room. It runs on uvloop, parses replies with hiredis, and writes
each delivery straight to the transport: the same floor the gateway stands on. Loopback
benchmarks only, never a server to deploy.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import socket
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

import hiredis
import orjson
import uvloop

from loadtest.wsclient import whole_frames

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SENDER = 36
"""An envelope is the sender's id (36 bytes of text) and then the frame to deliver."""


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _server_frame(payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload


class _Replies(asyncio.Protocol):
    """The publishing connection: its replies are read and dropped."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.reader.gets() is not False:
            pass


class Relay:
    def __init__(self) -> None:
        self.rooms: dict[bytes, list[Client]] = {}
        self.publisher: asyncio.Transport | None = None
        self.subscriber: asyncio.Transport | None = None
        self.events: dict[tuple[bytes, bytes, bytes], bytes] = {}
        """(user, room, kind) -> the PUBLISH command carrying its event."""

    def join(self, client: Client) -> None:
        channel = b"room:" + client.room
        members = self.rooms.get(channel)
        if members is None:
            members = self.rooms[channel] = []
            assert self.subscriber is not None
            self.subscriber.write(_command(b"SUBSCRIBE", channel))
        members.append(client)

    def leave(self, client: Client) -> None:
        members = self.rooms.get(b"room:" + client.room)
        if members is not None and client in members:
            members.remove(client)

    def publish(self, client: Client, kind: bytes) -> None:
        key = (client.user, client.room, kind)
        command = self.events.get(key)
        if command is None:
            event = orjson.dumps(
                {
                    "type": "typing",
                    "conversation_id": client.room.decode(),
                    "user_id": client.user.decode(),
                    "started": kind == b"typing.start",
                }
            )
            command = _command(
                b"PUBLISH", b"room:" + client.room, client.user + _server_frame(event)
            )
            self.events[key] = command
        assert self.publisher is not None
        self.publisher.write(command)

    def deliver(self, channel: bytes, envelope: bytes) -> None:
        sender, frame = envelope[:_SENDER], envelope[_SENDER:]
        for member in self.rooms.get(channel, ()):
            if member.user != sender:
                member.transport.write(frame)


class _Subscription(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        deliver = self.relay.deliver
        while (reply := self.reader.gets()) is not False:
            if reply[0] == b"message":
                deliver(reply[1], reply[2])


class Client(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.buffer = bytearray()
        self.upgraded = False
        self.user = b""
        self.room = b""
        self.transport = cast(asyncio.Transport, None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.leave(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded and not self._handshake():
            return
        end = 0
        for opcode, start, length in whole_frames(buffer, mask_size=4):
            end = start + length
            payload = bytes(buffer[start:end])
            mask = bytes(buffer[start - 4 : start])
            if mask != b"\x00\x00\x00\x00":
                key = int.from_bytes((mask * (length // 4 + 1))[:length], "big")
                payload = (int.from_bytes(payload, "big") ^ key).to_bytes(length, "big")
            if opcode == 1:
                self.relay.publish(self, orjson.loads(payload)["type"].encode())
            elif opcode == 8:
                self.transport.close()
        del buffer[:end]

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        headers = {}
        for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        del self.buffer[: end + 4]
        self.user, _, self.room = headers[b"authorization"].split()[-1].partition(b":")
        accept = base64.b64encode(
            hashlib.sha1(headers[b"sec-websocket-key"] + _ACCEPT_GUID).digest()
        )
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.upgraded = True
        self.relay.join(self)
        return True


async def _redis(
    loop: asyncio.AbstractEventLoop, url: str, factory: Callable[[], asyncio.Protocol]
) -> asyncio.Transport:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        transport, _ = await loop.create_unix_connection(factory, parts.path)
    else:
        host = parts.hostname or "127.0.0.1"
        transport, _ = await loop.create_connection(factory, host, parts.port or 6379)
    return transport


async def serve(port: int, redis_url: str) -> None:
    loop = asyncio.get_running_loop()
    relay = Relay()
    relay.publisher = await _redis(loop, redis_url, _Replies)
    relay.subscriber = await _redis(loop, redis_url, lambda: _Subscription(relay))
    server = await loop.create_server(
        lambda: Client(relay), "127.0.0.1", port, family=socket.AF_INET, backlog=4096
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"floor relay listening on ws://127.0.0.1:{bound}/ws", flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis-url", required=True)
    args, _ = parser.parse_known_args()  # the gateway's other settings do not apply
    uvloop.run(serve(args.port, args.redis_url))


if __name__ == "__main__":
    main()

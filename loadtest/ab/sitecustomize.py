"""The A/B of the private parts the gateway keeps: put this directory on PYTHONPATH and set
`GATEWAY_AB_PUBLIC` to `replies` or `frames`, and every gateway process a benchmark starts runs
with that part replaced by the library's public path (docs/capacity.md, "Private parts kept").

- `replies`: Redis replies read one by one with redis-py's `Connection.read_response()` and
  commands written with `send_packed_command()`, instead of `gateway/replies.py`'s bulk hiredis
  parsing off the connection's stream;
- `frames`: each delivery sent with websockets' `await ws.send(text)` (a task each), instead of
  one pre-framed frame written to every recipient's transport.

Only for measurement; nothing imports it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

_CHOICE = os.environ.get("GATEWAY_AB_PUBLIC", "")


def _public_replies() -> None:
    from redis.exceptions import ResponseError

    import gateway.autopipe
    import gateway.bus.redis

    class OneByOne:
        def __init__(self, connection: Any) -> None:
            self._connection = connection

        async def read(self) -> list[Any]:
            try:
                return [await self._connection.read_response()]
            except ResponseError as exc:
                return [exc]

    class PackedSender:
        def __init__(self, connection: Any) -> None:
            self._connection = connection
            self._tasks: set[asyncio.Task[None]] = set()

        def write(self, data: bytes) -> None:
            task = asyncio.ensure_future(
                self._connection.send_packed_command(data, check_health=False)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        def is_closing(self) -> bool:
            return not self._connection.is_connected

    setattr(gateway.autopipe, "ReplyStream", OneByOne)  # noqa: B010 (a module's global)
    setattr(gateway.autopipe, "stream_writer", PackedSender)  # noqa: B010
    setattr(gateway.bus.redis, "ReplyStream", OneByOne)  # noqa: B010


def _frames(data: bytes) -> list[bytes]:
    payloads, at = [], 0
    while at < len(data):
        length, at = data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        payloads.append(data[at : at + length])
        at += length
    return payloads


def _public_frames() -> None:
    from gateway.realtime.connection import Connection

    tasks: set[asyncio.Task[None]] = set()

    def write_frame(self: Connection, frame: bytes) -> None:
        for payload in _frames(frame):
            task = asyncio.ensure_future(self.ws.send(payload.decode()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    setattr(Connection, "_write_frame", write_frame)  # noqa: B010


if _CHOICE == "replies":
    _public_replies()
elif _CHOICE == "frames":
    _public_frames()

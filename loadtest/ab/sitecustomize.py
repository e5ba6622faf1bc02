"""The A/B of a private part the gateway keeps: put this directory on PYTHONPATH and set
`GATEWAY_AB_PUBLIC=frames`, and every gateway process a benchmark starts sends each delivery
with websockets' public `await ws.send(text)` (a task each) instead of writing one pre-framed
frame to every recipient's transport (docs/capacity.md, "Private parts kept").

Only for measurement; nothing imports it.
"""

from __future__ import annotations

import asyncio
import os

_CHOICE = os.environ.get("GATEWAY_AB_PUBLIC", "")


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


if _CHOICE == "frames":
    _public_frames()

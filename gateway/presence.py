"""Presence handlers: leases through the caches' connection-aware layer, watchers, queries.

Every transition a presence call returns is published once, on the user's presence channel;
every instance with a watcher of that user delivers it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from caches import PresenceStatus, PresenceTransition, PresenceUpdate, keys
from caches.models import utcnow
from gateway.connection import Connection
from gateway.hub import envelope
from gateway.protocol import ErrorCode, Frame, ProtocolError, ack, encode, event

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = [
    "announce",
    "announce_all",
    "handle_heartbeat",
    "handle_query",
    "handle_set",
    "handle_subscribe",
    "handle_unsubscribe",
    "presence_frame",
]


def presence_frame(
    user_id: uuid.UUID, status: PresenceStatus, last_seen: datetime | None
) -> dict[str, Any]:
    return {"user_id": user_id, "status": status, "last_seen": last_seen}


async def announce(gw: Gateway, update: PresenceUpdate) -> None:
    """Publish a transition (nothing for NONE) to the user's watchers everywhere."""
    if update.transition is PresenceTransition.NONE:
        return
    last_seen = utcnow() if update.status is PresenceStatus.OFFLINE else None
    frame = event("presence", **presence_frame(update.user_id, update.status, last_seen))
    gw.metrics["presence_transitions"] += 1
    await gw.bus.publish(keys.presence_channel(update.user_id), envelope(frame))


async def announce_all(gw: Gateway, updates: Iterable[PresenceUpdate]) -> None:
    """Publish many users' transitions together: one pipelined round trip, not one each."""
    await asyncio.gather(*(announce(gw, update) for update in updates))


async def handle_heartbeat(gw: Gateway, conn: Connection, frame: Frame) -> bytes:
    """Renew the connection's lease and the session; answered by `heartbeat_ack`."""
    await gw.renew(conn)
    fields: dict[str, Any] = {"type": "heartbeat_ack"}
    if frame.id is not None:
        fields["id"] = frame.id
    return encode(fields)


async def _statuses(gw: Gateway, user_ids: list[uuid.UUID]) -> dict[str, Any]:
    found = await gw.presence.get_bulk_presence(user_ids)
    return {str(u): presence_frame(u, status, seen) for u, (status, seen) in found.items()}


async def handle_subscribe(gw: Gateway, conn: Connection, frame: Frame) -> bytes:
    """Watch users: subscribe first, then read, so no transition falls in between."""
    user_ids: list[uuid.UUID] = frame.fields["user_ids"]
    watching = conn.watching if conn.watching is not None else set()
    added = [u for u in user_ids if u not in watching]
    if len(watching) + len(added) > gw.settings.max_watched:
        raise ProtocolError(
            ErrorCode.TOO_MANY_WATCHED,
            f"a connection may watch at most {gw.settings.max_watched} users",
            frame.id,
        )
    conn.watching = watching
    for user_id in added:
        watching.add(user_id)
        gw.hub.join(conn, keys.presence_channel(user_id))
    return ack(frame.id, presence=await _statuses(gw, user_ids))


async def handle_unsubscribe(gw: Gateway, conn: Connection, frame: Frame) -> bytes:
    for user_id in frame.fields["user_ids"]:
        if conn.watching is not None and user_id in conn.watching:
            conn.watching.discard(user_id)
            gw.hub.leave(conn, keys.presence_channel(user_id))
    return ack(frame.id)


async def handle_query(gw: Gateway, conn: Connection, frame: Frame) -> bytes:
    return ack(frame.id, presence=await _statuses(gw, frame.fields["user_ids"]))


async def handle_set(gw: Gateway, conn: Connection, frame: Frame) -> bytes:
    """Client-reported idle (`away`) or active (`online`)."""
    conn.away = frame.fields["status"] == "away"
    update = await gw.presence.set_away(conn.user_id, conn.id, conn.away, gw.lease)
    await announce(gw, update)
    return ack(frame.id, status=update.status)

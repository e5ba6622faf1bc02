"""Typing handlers: members only, throttled in Redis, announced atomically with the change."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from caches import keys
from gateway.connection import Connection
from gateway.hub import envelope
from gateway.protocol import ErrorCode, Frame, ProtocolError, ack, event

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["clear_all", "handle_start", "handle_stop"]


def _member_conversation(gw: Gateway, conn: Connection, frame: Frame) -> uuid.UUID:
    conversation_id: uuid.UUID = frame.fields["conversation_id"]
    if not gw.hub.is_member(conn.user_id, conversation_id):
        raise ProtocolError(ErrorCode.FORBIDDEN, "not a member of this conversation", frame.id)
    return conversation_id


def _typing_event(gw: Gateway, conversation_id: uuid.UUID, user_id: uuid.UUID, state: str) -> bytes:
    frame = event(
        "typing",
        conversation_id=conversation_id,
        user_id=user_id,
        state=state,
        expires_in_ms=gw.typing_ttl_ms if state == "start" else 0,
    )
    # The typist's own connections do not receive their own indicator.
    return envelope(frame, exclude=user_id)


async def handle_start(gw: Gateway, conn: Connection, frame: Frame) -> bytes | None:
    conversation_id = _member_conversation(gw, conn, frame)
    if conn.typing is None:
        conn.typing = set()
    conn.typing.add(conversation_id)
    announced = await gw.typing.set_typing(
        conversation_id,
        conn.user_id,
        gw.settings.typing_ttl,
        throttle=gw.settings.typing_throttle,
        announce=(
            keys.conversation_channel(conversation_id),
            _typing_event(gw, conversation_id, conn.user_id, "start"),
        ),
    )
    return None if frame.id is None else ack(frame.id, announced=announced)


async def handle_stop(gw: Gateway, conn: Connection, frame: Frame) -> bytes | None:
    conversation_id = _member_conversation(gw, conn, frame)
    if conn.typing is not None:
        conn.typing.discard(conversation_id)
    announced = await _stop(gw, conn.user_id, conversation_id)
    return None if frame.id is None else ack(frame.id, announced=announced)


async def _stop(gw: Gateway, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
    return await gw.typing.clear_typing(
        conversation_id,
        user_id,
        announce=(
            keys.conversation_channel(conversation_id),
            _typing_event(gw, conversation_id, user_id, "stop"),
        ),
    )


async def clear_all(gw: Gateway, conn: Connection) -> None:
    """On disconnect: stop every indicator this connection started."""
    for conversation_id in conn.typing or ():
        await _stop(gw, conn.user_id, conversation_id)
    conn.typing = None

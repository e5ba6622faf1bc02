"""Conversation handlers: create direct and group conversations, announce them to members."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from caches import keys
from gateway.connection import Connection
from gateway.hub import envelope
from gateway.protocol import ErrorCode, Frame, ProtocolError, ack, event

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["handle_create"]


async def handle_create(gw: Gateway, conn: Connection, frame: Frame) -> bytes:
    """Create (or, for an existing direct pair, return) a conversation.

    Members' connections on every instance receive `conversation.added` and from then on the
    conversation's events; local ones are joined before the ack, so the creator may use it at once.
    """
    kind: str = frame.fields["kind"]
    others = [u for u in frame.fields["member_ids"] if u != conn.user_id]
    if kind == "direct" and len(others) != 1:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            "member_ids: a direct conversation has one other member",
            frame.id,
        )
    if kind == "group" and not others:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "member_ids: a group needs another member", frame.id
        )
    conversation, created = await gw.store.create_conversation(
        kind, conn.user_id, others, frame.fields.get("name", "")
    )
    wire = conversation.as_wire()
    if created:
        added = event("conversation.added", conversation=wire)
        for member in conversation.member_ids:
            gw.hub.add_membership(member, conversation.id)
        await _publish_all(gw, conversation.member_ids, envelope(added))
    return ack(frame.id, conversation=wire, created=created)


async def _publish_all(gw: Gateway, members: tuple[uuid.UUID, ...], payload: bytes) -> None:
    # Issued together, so the auto-pipeline sends them in one round trip.
    await asyncio.gather(*(gw.bus.publish(keys.user_channel(m), payload) for m in members))

"""Conversation handlers: create direct and group conversations."""

from __future__ import annotations

from gateway.handlers.context import HandlerContext, Outcome
from gateway.protocol import ErrorCode, ProtocolError, events
from gateway.protocol.frames import ConversationCreate
from gateway.state import ClientState

__all__ = ["create"]


async def create(ctx: HandlerContext, client: ClientState, frame: ConversationCreate) -> Outcome:
    """Create (or, for an existing direct pair, return) a conversation."""
    others = [u for u in frame.member_ids if u != client.user_id]
    if frame.kind == "direct" and len(others) != 1:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            "member_ids: a direct conversation has one other member",
            frame.id,
        )
    if frame.kind == "group" and not others:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "member_ids: a group needs another member", frame.id
        )
    wire, created = await ctx.conversations.create(client.user_id, frame.kind, others, frame.name)
    return Outcome(events.ack(frame.id, conversation=wire, created=created))

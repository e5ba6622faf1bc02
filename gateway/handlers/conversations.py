"""Conversation handlers: create direct and group conversations."""

from __future__ import annotations

import uuid

from gateway.handlers.context import HandlerContext, Outcome
from gateway.handlers.quota import spend
from gateway.protocol import ErrorCode, ProtocolError, events
from gateway.protocol.frames import (
    ConversationCreate,
    ConversationMute,
    ConversationPin,
    ConversationsList,
)
from gateway.state import ClientState

__all__ = ["create", "list_conversations", "mute", "pin"]


async def create(ctx: HandlerContext, client: ClientState, frame: ConversationCreate) -> Outcome:
    """Create (or, for an existing direct pair, return) a conversation."""
    # Texts until the quota allowed it: a refused frame builds no UUIDs.
    creator = str(client.user_id)
    others_text = [u for u in frame.member_ids if u != creator]
    if frame.kind == "direct" and len(others_text) != 1:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            "member_ids: a direct conversation has one other member",
            frame.id,
        )
    if frame.kind == "group" and not others_text:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "member_ids: a group needs another member", frame.id
        )
    most = ctx.limits.max_group_members
    if len(others_text) > most:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"member_ids: at most {most} members besides the creator",
            frame.id,
        )
    await spend(ctx, client, "create", frame.id)
    others = [uuid.UUID(u) for u in others_text]  # canonical texts (`ids.uuid_texts`)
    wire, created = await ctx.conversations.create(client.user_id, frame.kind, others, frame.name)
    return Outcome(events.ack(frame.id, conversation=wire, created=created))


async def list_conversations(
    ctx: HandlerContext, client: ClientState, frame: ConversationsList
) -> Outcome:
    """The user's conversations with unread counts and the total (null when unknown)."""
    page, total = await ctx.conversations.list_for(client.user_id, frame.limit)
    return Outcome(events.ack(frame.id, conversations=page, total_unread=total))


async def _flag(
    ctx: HandlerContext, client: ClientState, frame: ConversationPin | ConversationMute, flag: str
) -> Outcome:
    await ctx.conversations.set_flag(client.user_id, frame.conversation_id, flag, frame.value)
    return Outcome(events.ack(frame.id, conversation_id=frame.conversation_id, value=frame.value))


async def pin(ctx: HandlerContext, client: ClientState, frame: ConversationPin) -> Outcome:
    return await _flag(ctx, client, frame, "pinned")


async def mute(ctx: HandlerContext, client: ClientState, frame: ConversationMute) -> Outcome:
    return await _flag(ctx, client, frame, "muted")

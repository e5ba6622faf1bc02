"""Typing handlers: members only; the service throttles and announces."""

from __future__ import annotations

import uuid

from gateway.handlers.context import HandlerContext, Outcome
from gateway.protocol import ErrorCode, ProtocolError, events
from gateway.protocol.frames import TypingStart, TypingStop
from gateway.state import ClientState

__all__ = ["start", "stop"]

_SILENT = Outcome()


def _member_conversation(
    ctx: HandlerContext, client: ClientState, frame: TypingStart | TypingStop
) -> uuid.UUID:
    if not ctx.topics.is_member(client.user_id, frame.conversation_id):
        raise ProtocolError(ErrorCode.FORBIDDEN, "not a member of this conversation", frame.id)
    return frame.conversation_id


async def start(ctx: HandlerContext, client: ClientState, frame: TypingStart) -> Outcome:
    announced = await ctx.typing.start(client, _member_conversation(ctx, client, frame))
    return _SILENT if frame.id is None else Outcome(events.ack(frame.id, announced=announced))


async def stop(ctx: HandlerContext, client: ClientState, frame: TypingStop) -> Outcome:
    announced = await ctx.typing.stop(client, _member_conversation(ctx, client, frame))
    return _SILENT if frame.id is None else Outcome(events.ack(frame.id, announced=announced))

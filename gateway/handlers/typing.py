"""Typing handlers: members only; the service throttles and announces."""

from __future__ import annotations

from gateway.handlers.context import HandlerContext, Outcome
from gateway.handlers.membership import require_member
from gateway.protocol import events
from gateway.protocol.frames import TypingStart, TypingStop
from gateway.state import ClientState

__all__ = ["start", "stop"]

_SILENT = Outcome()


async def start(ctx: HandlerContext, client: ClientState, frame: TypingStart) -> Outcome:
    conversation = await require_member(ctx, client, frame.conversation_id, frame.id)
    announced = await ctx.typing.start(client, conversation)
    return _SILENT if frame.id is None else Outcome(events.ack(frame.id, announced=announced))


async def stop(ctx: HandlerContext, client: ClientState, frame: TypingStop) -> Outcome:
    conversation = await require_member(ctx, client, frame.conversation_id, frame.id)
    announced = await ctx.typing.stop(client, conversation)
    return _SILENT if frame.id is None else Outcome(events.ack(frame.id, announced=announced))

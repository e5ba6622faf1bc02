"""Message handlers: send, receipts (delivered, read), history, unread counts, delete."""

from __future__ import annotations

from gateway.handlers.context import HandlerContext, Outcome
from gateway.handlers.membership import require_member
from gateway.handlers.quota import spend
from gateway.protocol import ErrorCode, ProtocolError, events
from gateway.protocol.frames import (
    ConversationUnread,
    MessageDelete,
    MessageDelivered,
    MessageRead,
    MessageSend,
    MessagesList,
)
from gateway.state import ClientState, Turn

__all__ = ["delete", "delivered", "history", "read", "send", "unread"]


async def send(ctx: HandlerContext, client: ClientState, frame: MessageSend) -> Outcome:
    """Persist and fan out; the ack carries the stored message (the same one on a retry).
    A connection's sends reach the store in the order they came, even with several in flight."""
    turn = Turn(client)  # before any await: the frames' order
    try:
        limit = ctx.limits.max_message_bytes
        if len(frame.content.encode()) > limit:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"content: at most {limit} bytes", frame.id
            )
        if not frame.content.strip():
            raise ProtocolError(ErrorCode.INVALID_FIELD, "content: must not be blank", frame.id)
        await spend(ctx, client, "send", frame.id)
        await turn.wait()
        turn.pass_on()  # the store queues this send before it first awaits: see `Turn`
        msg, created = await ctx.messages.send(
            client, frame.conversation_id, frame.client_msg_id, frame.content, frame.content_type
        )
    finally:
        turn.pass_on()
    return Outcome(
        events.ack(frame.id, message=msg.as_wire(), created=created, deleted=msg.deleted)
    )


async def _receipt(
    ctx: HandlerContext, client: ClientState, frame: MessageDelivered | MessageRead, read: bool
) -> Outcome:
    receipt = await ctx.messages.receipt(client, frame.conversation_id, frame.message_id, read)
    return Outcome(
        events.ack(frame.id, delivered_seq=receipt.delivered_seq, read_seq=receipt.read_seq)
    )


async def delivered(ctx: HandlerContext, client: ClientState, frame: MessageDelivered) -> Outcome:
    return await _receipt(ctx, client, frame, read=False)


async def read(ctx: HandlerContext, client: ClientState, frame: MessageRead) -> Outcome:
    return await _receipt(ctx, client, frame, read=True)


async def unread(ctx: HandlerContext, client: ClientState, frame: ConversationUnread) -> Outcome:
    """The member's unread count in one conversation (cache-aside, never a guessed 0)."""
    count = await ctx.messages.unread(client, frame.conversation_id)
    return Outcome(events.ack(frame.id, conversation_id=frame.conversation_id, unread_count=count))


async def history(ctx: HandlerContext, client: ClientState, frame: MessagesList) -> Outcome:
    """A page of history; `after_seq` is the recovery path (everything after what was seen)."""
    if frame.before_seq is not None and frame.after_seq is not None:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "before_seq, after_seq: one or the other", frame.id
        )
    await require_member(ctx, client, frame.conversation_id, frame.id)
    page, more = await ctx.messages.history(
        frame.conversation_id, frame.limit, frame.before_seq, frame.after_seq
    )
    return Outcome(events.ack(frame.id, messages=page, has_more=more))


async def delete(ctx: HandlerContext, client: ClientState, frame: MessageDelete) -> Outcome:
    """Its sender deletes a message; members are told `message.deleted`."""
    msg = await ctx.messages.delete(client, frame.conversation_id, frame.message_id)
    return Outcome(events.ack(frame.id, message_id=msg.id, seq=msg.seq))

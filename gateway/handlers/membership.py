"""The one membership check of the handlers that read a conversation or speak in it without
writing to the store (typing, history).

The hub's view of a user's conversations comes first: loaded at connect, updated by every
join, and free. A conversation it does not know yet (a join still on its way from another
instance) is asked of the store, the source of truth, so the two can never disagree about who
may read. Writes (sends, receipts, deletes, flags) are checked by the store inside their own
transaction, and its refusal is mapped to `forbidden` in one place (`dispatch`).
"""

from __future__ import annotations

import uuid

from gateway.handlers.context import HandlerContext
from gateway.protocol import ErrorCode, ProtocolError
from gateway.state import ClientState

__all__ = ["require_member"]


async def require_member(
    ctx: HandlerContext, client: ClientState, conversation_id: uuid.UUID, request_id: str | None
) -> uuid.UUID:
    """`conversation_id`, once the client's user is found a member; else `forbidden`."""
    if ctx.topics.is_member(client.user_id, conversation_id):
        return conversation_id
    if client.user_id in await ctx.conversations.members(conversation_id):
        return conversation_id
    raise ProtocolError(ErrorCode.FORBIDDEN, "not a member of this conversation", request_id)

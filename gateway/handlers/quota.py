"""The one way a handler spends a user's quota: refused `rate_limited` with `retry_after_ms`."""

from __future__ import annotations

import math

from gateway.handlers.context import HandlerContext
from gateway.protocol import ErrorCode, ProtocolError
from gateway.state import ClientState

__all__ = ["spend"]

_WHAT = {"send": "messages", "create": "conversations created"}


async def spend(
    ctx: HandlerContext, client: ClientState, kind: str, request_id: str | None
) -> None:
    """Take one `kind` from the user's quota (all their connections, every instance).

    Raises:
        ProtocolError: `rate_limited`, with the milliseconds until it would be allowed.
    """
    wait = await ctx.quotas.take(client.user_id, kind)
    if wait > 0:
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"too many {_WHAT.get(kind, kind)} for this user; retry later",
            request_id,
            retry_after_ms=max(1, math.ceil(wait * 1000)),
        )

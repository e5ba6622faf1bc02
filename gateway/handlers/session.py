"""Session handler: token refresh on a live connection."""

from __future__ import annotations

from gateway.auth import AuthError
from gateway.handlers.context import HandlerContext, Outcome
from gateway.protocol import ErrorCode, ProtocolError, events
from gateway.protocol.frames import Auth
from gateway.state import ClientState

__all__ = ["reauth"]


async def reauth(ctx: HandlerContext, client: ClientState, frame: Auth) -> Outcome:
    """`auth` after the hello: carry on under a fresh token of the same user. A refused token
    leaves the connection as it was (it still ends when its current token does)."""
    if ctx.sessions is None:
        raise ProtocolError(ErrorCode.ALREADY_AUTHENTICATED, "already authenticated", frame.id)
    try:
        expires_at = await ctx.sessions.refresh(client, frame.token)
    except AuthError as exc:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, str(exc), frame.id) from None
    return Outcome(events.ack(frame.id, expires_at=events.utc(expires_at)))

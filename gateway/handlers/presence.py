"""Presence handlers: heartbeat, watching users, bulk queries, client-reported away."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from gateway.handlers.context import HandlerContext, Outcome
from gateway.protocol import Close, ErrorCode, ProtocolError, events
from gateway.protocol.frames import (
    Heartbeat,
    PresenceQuery,
    PresenceSet,
    PresenceSubscribe,
    PresenceUnsubscribe,
)
from gateway.state import ClientState

__all__ = ["heartbeat", "query", "set_status", "subscribe", "unsubscribe"]


async def heartbeat(ctx: HandlerContext, client: ClientState, frame: Heartbeat) -> Outcome:
    """Renew the lease and the session; a session that is gone ends the connection."""
    if await ctx.presence.renew(client):
        return Outcome(events.heartbeat_ack(frame.id))
    return Outcome(events.session_revoked(events.EXPIRED), Close.SESSION_REVOKED, events.EXPIRED)


async def _visible(
    ctx: HandlerContext, client: ClientState, user_ids: Sequence[uuid.UUID]
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """The ids the client may see, and those refused (answered `forbidden`)."""
    allowed = await ctx.visibility.visible(client.user_id, user_ids)
    return [u for u in user_ids if u in allowed], [u for u in user_ids if u not in allowed]


async def subscribe(ctx: HandlerContext, client: ClientState, frame: PresenceSubscribe) -> Outcome:
    """Watch users: subscribe (confirmed) first, then read, so no transition falls between."""
    watching = client.watching or set()
    allowed, refused = await _visible(ctx, client, frame.user_ids)
    added = [u for u in allowed if u not in watching]
    if len(watching) + len(added) > ctx.limits.max_watched:
        raise ProtocolError(
            ErrorCode.TOO_MANY_WATCHED,
            f"a connection may watch at most {ctx.limits.max_watched} users",
            frame.id,
        )
    await ctx.topics.watch(client, added)
    statuses = await ctx.presence.statuses(allowed)
    return Outcome(events.ack(frame.id, presence=statuses, forbidden=refused))


async def unsubscribe(
    ctx: HandlerContext, client: ClientState, frame: PresenceUnsubscribe
) -> Outcome:
    ctx.topics.unwatch(client, frame.user_ids)
    return Outcome(events.ack(frame.id))


async def query(ctx: HandlerContext, client: ClientState, frame: PresenceQuery) -> Outcome:
    allowed, refused = await _visible(ctx, client, frame.user_ids)
    statuses = await ctx.presence.statuses(allowed)
    return Outcome(events.ack(frame.id, presence=statuses, forbidden=refused))


async def set_status(ctx: HandlerContext, client: ClientState, frame: PresenceSet) -> Outcome:
    """Client-reported idle (`away`) or active (`online`)."""
    status = await ctx.presence.set_away(client, frame.away)
    return Outcome(events.ack(frame.id, status=status))

"""Handlers: one module per area, and the dispatch table from frame class to handler.

`dispatch` decodes one raw frame (`parse`), runs its handler within the request budget
(`handle`) and turns every failure into an answer: a bad frame, a refused request, a backend
that is down or too slow, or a surprise. It never raises and never touches a socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from caches import CacheUnavailable
from gateway.handlers import conversations, messages, presence, session, typing
from gateway.handlers.budget import RequestBudget
from gateway.handlers.context import HandlerContext, Limits, Outcome
from gateway.metrics import ERRORS, FRAMES_IN, INVALID_FRAME
from gateway.protocol import ErrorCode, ProtocolError, decode, events, frames
from gateway.state import ClientState
from gateway.store import KeyConflict, NotAllowed, NotAMember, NotFound, StoreError

__all__ = [
    "HANDLERS",
    "PIPELINED",
    "HandlerContext",
    "Limits",
    "Outcome",
    "RequestBudget",
    "dispatch",
    "handle",
    "parse",
]

log = logging.getLogger(__name__)

Handler = Callable[[HandlerContext, ClientState, Any], Awaitable[Outcome]]

_REFUSALS: tuple[tuple[type[StoreError], ErrorCode], ...] = (
    (NotAMember, ErrorCode.FORBIDDEN),
    (NotAllowed, ErrorCode.FORBIDDEN),
    (NotFound, ErrorCode.NOT_FOUND),
    (KeyConflict, ErrorCode.CONFLICT),
)
"""The store's refusals as the client hears them: the one place they are mapped."""


def _refusal(exc: StoreError) -> ErrorCode | None:
    for kind, code in _REFUSALS:
        if isinstance(exc, kind):
            return code
    return None


HANDLERS: dict[type[frames.ClientFrame], Handler] = {
    frames.Auth: session.reauth,
    frames.Heartbeat: presence.heartbeat,
    frames.PresenceSubscribe: presence.subscribe,
    frames.PresenceUnsubscribe: presence.unsubscribe,
    frames.PresenceQuery: presence.query,
    frames.PresenceSet: presence.set_status,
    frames.TypingStart: typing.start,
    frames.TypingStop: typing.stop,
    frames.ConversationCreate: conversations.create,
    frames.MessageSend: messages.send,
    frames.MessageDelivered: messages.delivered,
    frames.MessageRead: messages.read,
    frames.MessageDelete: messages.delete,
    frames.MessagesList: messages.history,
    frames.ConversationsList: conversations.list_conversations,
    frames.ConversationUnread: messages.unread,
    frames.ConversationPin: conversations.pin,
    frames.ConversationMute: conversations.mute,
}


PIPELINED: frozenset[type[frames.ClientFrame]] = frozenset({frames.MessageSend})
"""Frames a connection may have several of in flight (`gateway.realtime.pipeline`): their
handlers keep their own order where it matters (a send's `Turn`)."""


async def dispatch(ctx: HandlerContext, client: ClientState, raw: str) -> Outcome:
    """Decode `raw`, run its handler, and say what should happen."""
    decoded = parse(ctx, raw)
    if isinstance(decoded, Outcome):
        return decoded
    return await handle(ctx, client, decoded)


def parse(ctx: HandlerContext, raw: str) -> frames.ClientFrame | Outcome:
    """The frame `raw` holds, or the answer to a frame that is not one."""
    try:
        frame = decode(raw)
    except ProtocolError as exc:
        ctx.metrics[INVALID_FRAME] += 1
        return _refused(ctx, exc)
    ctx.metrics[FRAMES_IN[frame.TYPE]] += 1
    return frame


async def handle(ctx: HandlerContext, client: ClientState, frame: frames.ClientFrame) -> Outcome:
    """Run `frame`'s handler within the request budget; every failure becomes an answer."""
    request_id = frame.id
    try:
        handler = HANDLERS.get(type(frame))
        if handler is None:  # only `auth` is valid on the wire but not here
            raise ProtocolError(
                ErrorCode.ALREADY_AUTHENTICATED, "already authenticated", request_id
            )
        task = ctx.budget.start()
        try:
            return await handler(ctx, client, frame)
        except StoreError as exc:
            code = _refusal(exc)
            if code is None:
                raise
            raise ProtocolError(code, str(exc), request_id) from None
        except asyncio.CancelledError:
            if not ctx.budget.is_overdue(task):
                raise
            raise TimeoutError("no answer within the request budget") from None
        finally:
            ctx.budget.finish(task)
    except ProtocolError as exc:
        return _refused(ctx, exc)
    except (CacheUnavailable, StoreError, TimeoutError) as exc:
        ctx.metrics[ERRORS[ErrorCode.UNAVAILABLE.value]] += 1
        log.warning(
            "backend unavailable handling a frame of %s: %s",
            client.connection_id,
            exc or "no answer within the budget",
        )
        return Outcome(
            events.error(ErrorCode.UNAVAILABLE, "temporarily unavailable; retry", request_id)
        )
    except Exception:
        ctx.metrics[ERRORS[ErrorCode.INTERNAL.value]] += 1
        log.exception("unexpected error handling a frame of %s", client.connection_id)
        return Outcome(events.error(ErrorCode.INTERNAL, "internal error", request_id))


def _refused(ctx: HandlerContext, exc: ProtocolError) -> Outcome:
    ctx.metrics[ERRORS[exc.code.value]] += 1
    return Outcome(events.error(exc.code, exc.message, exc.request_id, exc.retry_after_ms))

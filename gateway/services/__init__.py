"""Orchestration shared by the handlers and the runtime: presence, typing, conversations."""

from gateway.services.conversations import ConversationService
from gateway.services.messages import MessageService
from gateway.services.presence import PresenceService, Publish
from gateway.services.typing import TypingService

__all__ = [
    "ConversationService",
    "MessageService",
    "PresenceService",
    "Publish",
    "TypingService",
]

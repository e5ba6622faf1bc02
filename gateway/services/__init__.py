"""Orchestration shared by the handlers and the runtime: presence, typing, conversations,
messaging, cache repair, revocations kept through data loss."""

from gateway.services.conversations import ConversationService
from gateway.services.messages import MessageService
from gateway.services.presence import PresenceService
from gateway.services.quotas import Quota, Quotas
from gateway.services.repair import CacheRepair
from gateway.services.revocations import Revocations
from gateway.services.typing import TypingService
from gateway.services.visibility import PresenceVisibility

__all__ = [
    "CacheRepair",
    "ConversationService",
    "MessageService",
    "PresenceService",
    "PresenceVisibility",
    "Quota",
    "Quotas",
    "Revocations",
    "TypingService",
]

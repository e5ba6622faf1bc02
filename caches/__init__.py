"""The Redis caching layer: sessions, messages, presence and conversations.

A library with no gateway imports; see docs/caches.md for the API and examples.
"""

from caches.conversation import ConversationCache
from caches.epoch import EpochMark
from caches.errors import CacheError, CacheUnavailable
from caches.instances import InstanceLiveness
from caches.message import MessageCache
from caches.models import (
    CachedConversation,
    CachedMessage,
    PresenceStatus,
    PresenceTransition,
    SessionData,
)
from caches.presence import PresenceCache, PresenceUpdate
from caches.quota import QuotaCache
from caches.redis import ClientOptions, EmbeddedRedis, connect
from caches.session import SessionCache

__all__ = [
    "CacheError",
    "CacheUnavailable",
    "CachedConversation",
    "CachedMessage",
    "ClientOptions",
    "ConversationCache",
    "EmbeddedRedis",
    "EpochMark",
    "InstanceLiveness",
    "MessageCache",
    "PresenceCache",
    "PresenceStatus",
    "PresenceTransition",
    "PresenceUpdate",
    "QuotaCache",
    "SessionCache",
    "SessionData",
    "connect",
]

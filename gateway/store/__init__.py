"""The system of record: conversations and members (a `Store` protocol; SQLite by default)."""

from gateway.store.base import (
    Conversation,
    ConversationSummary,
    KeyConflict,
    NotAllowed,
    NotAMember,
    NotFound,
    Receipt,
    Revoked,
    Store,
    StoredMessage,
    StoreError,
    StoreOpenError,
)
from gateway.store.sqlite import SqliteStore

__all__ = [
    "Conversation",
    "ConversationSummary",
    "KeyConflict",
    "NotAMember",
    "NotAllowed",
    "NotFound",
    "Receipt",
    "Revoked",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreOpenError",
    "StoredMessage",
]

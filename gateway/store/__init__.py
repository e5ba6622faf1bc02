"""The system of record: a `Store` protocol, SQLite (one host) and PostgreSQL (many hosts)
backends, and `open_store(url)`, which picks one."""

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
from gateway.store.opening import describe_store, open_store
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
    "describe_store",
    "open_store",
]

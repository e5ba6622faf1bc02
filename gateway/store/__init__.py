"""The system of record: conversations and members (a `Store` protocol; SQLite by default)."""

from gateway.store.base import Conversation, Store, StoreError, StoreOpenError
from gateway.store.sqlite import SqliteStore

__all__ = ["Conversation", "SqliteStore", "Store", "StoreError", "StoreOpenError"]

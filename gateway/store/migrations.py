"""The SQLite schema as ordered migrations; `PRAGMA user_version` says which are applied.

Append a migration to add tables or columns; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: conversations and their members
    """
    CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL CHECK (type IN ('direct', 'group')),
        name TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        direct_key TEXT UNIQUE
    );
    CREATE TABLE IF NOT EXISTS members (
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        user_id TEXT NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
    );
    CREATE INDEX IF NOT EXISTS members_by_user ON members(user_id);
    """,
    # 2: messages with a per-conversation sequence, idempotent per sender; receipt watermarks
    """
    ALTER TABLE conversations ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        seq INTEGER NOT NULL,
        sender_id TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        content TEXT NOT NULL,
        content_type TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (conversation_id, seq),
        UNIQUE (sender_id, client_msg_id)
    );
    """,
    # 3: per-member flags
    """
    ALTER TABLE members ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE members ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: presence grants the application adds (besides shared conversations)
    """
    CREATE TABLE presence_grants (
        watcher_id TEXT NOT NULL,
        target_id TEXT NOT NULL,
        PRIMARY KEY (watcher_id, target_id)
    );
    """,
    # 5: a deleted message keeps its row (its idempotency key answers the deletion for ever);
    #    revocations kept durably, so they outlive a Redis that lost its data
    """
    ALTER TABLE messages ADD COLUMN deleted_at TEXT;
    CREATE TABLE revocations (
        kind TEXT NOT NULL CHECK (kind IN ('token', 'session')),
        id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE INDEX revocations_by_expiry ON revocations(expires_at);
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The version a store is at once every migration is applied."""

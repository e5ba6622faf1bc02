"""The PostgreSQL schema as ordered migrations; `schema_migrations` says which are applied.

Append a migration to change the schema; never edit one that has shipped. The SQLite schema
(`migrations.py`) holds the same records; this one uses PostgreSQL's types (uuid, timestamptz).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: everything the SQLite store had at its version 5
    """
    CREATE TABLE conversations (
        id uuid PRIMARY KEY,
        type text NOT NULL CHECK (type IN ('direct', 'group')),
        name text NOT NULL DEFAULT '',
        created_by uuid NOT NULL,
        created_at timestamptz NOT NULL,
        direct_key text UNIQUE,
        last_seq bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE members (
        conversation_id uuid NOT NULL REFERENCES conversations(id),
        user_id uuid NOT NULL,
        delivered_seq bigint NOT NULL DEFAULT 0,
        read_seq bigint NOT NULL DEFAULT 0,
        pinned boolean NOT NULL DEFAULT false,
        muted boolean NOT NULL DEFAULT false,
        PRIMARY KEY (conversation_id, user_id)
    );
    CREATE INDEX members_by_user ON members(user_id);
    CREATE TABLE messages (
        id uuid PRIMARY KEY,
        conversation_id uuid NOT NULL REFERENCES conversations(id),
        seq bigint NOT NULL,
        sender_id uuid NOT NULL,
        client_msg_id text NOT NULL,
        content text NOT NULL,
        content_type text NOT NULL,
        created_at timestamptz NOT NULL,
        deleted_at timestamptz,
        UNIQUE (conversation_id, seq),
        UNIQUE (sender_id, client_msg_id)
    );
    CREATE TABLE presence_grants (
        watcher_id uuid NOT NULL,
        target_id uuid NOT NULL,
        PRIMARY KEY (watcher_id, target_id)
    );
    CREATE TABLE revocations (
        kind text NOT NULL CHECK (kind IN ('token', 'session')),
        id text NOT NULL,
        expires_at double precision NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE INDEX revocations_by_expiry ON revocations(expires_at);
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The version a database is at once every migration is applied."""

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
    # 2: a batch of sends as one function call, planned once per connection (see send_batch)
    """
    CREATE FUNCTION send_batch(
        p_nth int[], p_id uuid[], p_c uuid[], p_u uuid[], p_k text[], p_content text[],
        p_type text[], p_at timestamptz[]
    ) RETURNS TABLE (
        r_member boolean, r_new_seq bigint, r_whole int, r_id uuid, r_conversation_id uuid,
        r_seq bigint, r_sender_id uuid, r_client_msg_id text, r_content text,
        r_content_type text, r_created_at timestamptz, r_deleted_at timestamptz
    )
    LANGUAGE plpgsql
    -- The plan is made once per connection and kept whatever the batch's size: a fresh plan
    -- per call (what the planner prefers for arrays of unknown length) cost more than the
    -- statement's whole run. Every row is reached through an index, so the kept plan stays
    -- good however the tables and their statistics change.
    SET plan_cache_mode = force_generic_plan
    AS $body$
    BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest(p_nth, p_id, p_c, p_u, p_k, p_content, p_type, p_at)
            AS t(nth, id, c, u, k, content, type, at)
    ), checked AS (
        SELECT i.*, m.member IS NOT NULL AS member, e.id IS NOT NULL AS stored
        FROM input i
        LEFT JOIN LATERAL (
            SELECT true AS member FROM members
            WHERE members.conversation_id = i.c AND members.user_id = i.u LIMIT 1
        ) m ON true
        LEFT JOIN LATERAL (
            SELECT messages.id FROM messages
            WHERE messages.sender_id = i.u AND messages.client_msg_id = i.k LIMIT 1
        ) e ON true
    ), fresh AS (
        SELECT *, row_number() OVER (PARTITION BY c ORDER BY nth) AS rank_in_conversation,
               count(*) OVER (PARTITION BY c) AS sends_in_conversation
        FROM checked WHERE member AND NOT stored
    ), locked AS MATERIALIZED (
        SELECT conversations.id FROM conversations
        WHERE conversations.id = ANY (ARRAY(SELECT c FROM fresh))
        ORDER BY conversations.id FOR UPDATE
    ), counter AS (
        UPDATE conversations
        SET last_seq = conversations.last_seq
            + (SELECT count(*) FROM fresh f WHERE f.c = conversations.id)
        WHERE conversations.id = ANY (ARRAY(SELECT locked.id FROM locked))
        RETURNING conversations.id, conversations.last_seq
    ), inserted AS (
        INSERT INTO messages AS msg (id, conversation_id, seq, sender_id, client_msg_id,
                                     content, content_type, created_at)
        SELECT f.id, f.c, counter.last_seq - f.sends_in_conversation + f.rank_in_conversation,
               f.u, f.k, f.content, f.type, f.at
        FROM fresh f JOIN counter ON counter.id = f.c
        ON CONFLICT (sender_id, client_msg_id) DO NOTHING
        RETURNING msg.conversation_id, msg.sender_id, msg.client_msg_id, msg.seq
    ), watermark AS (
        UPDATE members SET delivered_seq = GREATEST(members.delivered_seq, w.seq),
                           read_seq = GREATEST(members.read_seq, w.seq)
        FROM (SELECT ins.conversation_id, ins.sender_id, max(ins.seq) AS seq
              FROM inserted ins GROUP BY 1, 2) AS w
        WHERE members.conversation_id = w.conversation_id AND members.user_id = w.sender_id
    )
    SELECT ch.member, i.seq,
           1 / (SELECT CASE WHEN count(*) = (SELECT count(*) FROM fresh) THEN 1 ELSE 0 END
                FROM inserted)::int,
           e.id, e.conversation_id, e.seq, e.sender_id, e.client_msg_id, e.content,
           e.content_type, e.created_at, e.deleted_at
    FROM checked ch
    LEFT JOIN inserted i ON i.sender_id = ch.u AND i.client_msg_id = ch.k
    LEFT JOIN LATERAL (
        SELECT * FROM messages
        WHERE ch.stored AND messages.sender_id = ch.u AND messages.client_msg_id = ch.k LIMIT 1
    ) e ON true
    ORDER BY ch.nth;
    END
    $body$;
    """,
)

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The version a database is at once every migration is applied."""

"""Every Redis key and pub/sub channel name, in one place.

Names follow the spec's "Cache Keys Format" table character for character, with the placeholder
replaced by the id and the braces kept: `presence:{<uuid>}`. The braces make the id the Redis
Cluster hash tag, so all keys of one entity share a slot and a Lua script may touch them together.
Index keys the spec lacks follow the same style.

Ids are validated here, before any key is built: a malformed id raises `ValueError`.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from caches.memo import bounded_memo

__all__ = [
    "BLACKLIST_PREFIX",
    "PRESENCE_BUCKETS",
    "PRESENCE_DEADLINES",
    "PRESENCE_ONLINE",
    "REVOCATIONS_CHANNEL",
    "blacklist_token",
    "conversation_channel",
    "conversation_message_bodies",
    "gateway_epoch",
    "conversation_messages",
    "instance_channel",
    "lastseen",
    "message",
    "presence",
    "presence_bucket",
    "presence_channel",
    "presence_deadlines_bucket",
    "presence_online_bucket",
    "presence_conns",
    "presence_step",
    "presence_leases",
    "presence_many",
    "quota",
    "session",
    "typing",
    "typing_index",
    "unread",
    "user_channel",
    "user_conversation_data",
    "user_conversations",
    "user_conversations_version",
    "user_session",
    "user_sessions",
    "uuid_text",
    "valid_id",
    "valid_uuid",
]

# Session, token and message ids may be any opaque string of this form: URL-safe, no braces
# (they would move the hash tag), no separators, bounded length.
_OPAQUE_ID: Final = re.compile(r"[A-Za-z0-9._~-]{1,128}")

BLACKLIST_PREFIX: Final = "blacklist:token:"
PRESENCE_ONLINE: Final = "presence:online"
"""Sorted set: user id -> epoch ms its presence expires (index for online users)."""
PRESENCE_DEADLINES: Final = "presence:deadlines"
"""Sorted set: user id -> epoch ms of the user's earliest lease expiry (what the sweep scans)."""
PRESENCE_BUCKETS: Final = 16
"""On a Redis Cluster the two indexes are split into this many buckets, each in a slot of its
own (hash tags `{p0}`..`{p15}`), so no single slot carries every online user."""


def presence_bucket(user_id: uuid.UUID | str) -> int:
    """The index bucket of a user on a cluster (stable: the user id's low bits)."""
    return valid_uuid(user_id, "user_id").int % PRESENCE_BUCKETS


def presence_online_bucket(bucket: int) -> str:
    """Cluster: one bucket of the online index (`presence:online` on a standalone Redis)."""
    return f"presence:online:{{p{bucket}}}"


def presence_deadlines_bucket(bucket: int) -> str:
    """Cluster: one bucket of the sweep's deadline index (`presence:deadlines` standalone)."""
    return f"presence:deadlines:{{p{bucket}}}"


REVOCATIONS_CHANNEL: Final = "ch:revocations"
"""Pub/sub: a session deleted or a token blacklisted, so every instance closes its sockets."""


def valid_uuid(value: uuid.UUID | str, what: str = "id") -> uuid.UUID:
    """Return `value` as a UUID, or raise `ValueError` naming `what`."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return _parsed(value)
        except ValueError:
            pass
    raise ValueError(f"{what} must be a UUID, got {value!r}")


def valid_id(value: str | uuid.UUID, what: str = "id") -> str:
    """Return an opaque id (session, token, message) as a string, or raise `ValueError`."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and _OPAQUE_ID.fullmatch(value):
        return value
    raise ValueError(f"{what} must be 1-128 characters of [A-Za-z0-9._~-], got {value!r}")


# str(UUID) and UUID(text) are pure Python and dominate bulk calls (a message's members, read
# back from the store, name their keys and counters); the same users recur, so both are
# memoized: a UUID's text by its number (an int hashes and compares in C, a UUID through its
# Python `__hash__` and `__eq__`, and ids read back from a store are new objects each time),
# and a text's canonical spelling by the text as given.
def _text_of_number(number: int) -> str:
    return str(uuid.UUID(int=number))


_text_by_number = bounded_memo(_text_of_number, 1 << 17)
_parsed = bounded_memo(uuid.UUID, 1 << 17)


def _canonical_text(text: str) -> str:
    return _text_by_number(uuid.UUID(text).int)


_canonical = bounded_memo(_canonical_text, 1 << 17)


def uuid_text(value: uuid.UUID | str, what: str = "id") -> str:
    """`value`'s canonical text (lower case, hyphenated), or `ValueError` naming `what`."""
    if type(value) is uuid.UUID:
        return _text_by_number(value.int)
    if type(value) is str:
        try:
            return _canonical(value)
        except ValueError:
            pass
    return _text_by_number(valid_uuid(value, what).int)


# Sessions
def session(session_id: str) -> str:
    return f"session:{{{valid_id(session_id, 'session_id')}}}"


def user_session(user_id: uuid.UUID | str, session_id: str) -> str:
    user = uuid_text(user_id, "user_id")
    return f"user_session:{{{user}}}:{{{valid_id(session_id, 'session_id')}}}"


def user_sessions(user_id: uuid.UUID | str) -> str:
    """Set of a user's session ids: the multi-device index (no KEYS/SCAN)."""
    return f"user_sessions:{{{uuid_text(user_id, 'user_id')}}}"


def blacklist_token(token_id: str) -> str:
    return f"{BLACKLIST_PREFIX}{{{valid_id(token_id, 'token_id')}}}"


# Messages
def message(message_id: str | uuid.UUID) -> str:
    return f"message:{{{valid_id(message_id, 'message_id')}}}"


def conversation_messages(conversation_id: uuid.UUID | str) -> str:
    """Sorted set: message id -> seq, or created_at epoch ms without one (the spec's list)."""
    return f"conversation:messages:{{{uuid_text(conversation_id, 'conversation_id')}}}"


def conversation_message_bodies(conversation_id: uuid.UUID | str) -> str:
    """Hash: message id -> message JSON, plus the list's `@loaded`/`@complete` markers."""
    return f"conversation:messages:bodies:{{{uuid_text(conversation_id, 'conversation_id')}}}"


def unread(conversation_id: uuid.UUID | str, user_id: uuid.UUID | str) -> str:
    conversation = uuid_text(conversation_id, "conversation_id")
    return f"unread:{{{conversation}}}:{{{uuid_text(user_id, 'user_id')}}}"


def unread_state(conversation_id: uuid.UUID | str) -> str:
    """Hash beside a conversation's unread counters (same slot): '@v', bumped by every change,
    and per user the seq their counter was filled as of."""
    return f"unread:state:{{{uuid_text(conversation_id, 'conversation_id')}}}"


# Presence and typing
_PRESENCE = "presence:{%s}"
_LASTSEEN = "lastseen:{%s}"
_PRESENCE_LEASES = "presence:leases:{%s}"
_PRESENCE_CONNS = "presence:conns:{%s}"


def presence(user_id: uuid.UUID | str) -> str:
    return _PRESENCE % uuid_text(user_id, "user_id")


def presence_many(user_ids: list[uuid.UUID]) -> list[str]:
    """`presence` of many validated UUIDs (bulk reads of contact lists are hot)."""
    return [_PRESENCE % _text_by_number(u.int) for u in user_ids]


def lastseen(user_id: uuid.UUID | str) -> str:
    return _LASTSEEN % uuid_text(user_id, "user_id")


def presence_leases(user_id: uuid.UUID | str) -> str:
    """Sorted set: connection id -> lease expiry epoch ms."""
    return _PRESENCE_LEASES % uuid_text(user_id, "user_id")


def presence_conns(user_id: uuid.UUID | str) -> str:
    """Hash: connection id -> `a` (active) or `w` (away), plus `@status`, the announced status."""
    return _PRESENCE_CONNS % uuid_text(user_id, "user_id")


def presence_step(user_id: uuid.UUID | str) -> tuple[str, list[str]]:
    """The user's id as text and the four keys one presence step touches, in the script's
    order: status, leases, connections, last seen (heartbeat batches build these per client)."""
    user = uuid_text(user_id, "user_id")
    return user, [
        _PRESENCE % user,
        _PRESENCE_LEASES % user,
        _PRESENCE_CONNS % user,
        _LASTSEEN % user,
    ]


def typing(conversation_id: uuid.UUID | str, user_id: uuid.UUID | str) -> str:
    conversation = uuid_text(conversation_id, "conversation_id")
    return f"typing:{{{conversation}}}:{{{uuid_text(user_id, 'user_id')}}}"


def typing_index(conversation_id: uuid.UUID | str) -> str:
    """Sorted set: user id -> typing expiry epoch ms, so a read is one round trip."""
    return f"typing:index:{{{uuid_text(conversation_id, 'conversation_id')}}}"


# Conversations
def user_conversations(user_id: uuid.UUID | str) -> str:
    """Sorted set: conversation id -> sort score (pinned first, then newest message first)."""
    return f"conversations:user:{{{uuid_text(user_id, 'user_id')}}}"


def user_conversation_data(user_id: uuid.UUID | str) -> str:
    """Hash: conversation id -> conversation JSON, plus `@loaded`/`@complete` markers."""
    return f"conversations:user:data:{{{uuid_text(user_id, 'user_id')}}}"


def user_conversations_version(user_id: uuid.UUID | str) -> str:
    """Counter bumped by every write to the list: a fill carrying an older version (its store
    read came before a write) is refused."""
    return f"conversations:user:version:{{{uuid_text(user_id, 'user_id')}}}"


# Gateway instances
def quota(user_id: uuid.UUID | str, kind: str) -> str:
    """A user's token bucket for one kind of costly operation (`send`, `create`), shared by
    every instance."""
    return f"quota:{{{valid_uuid(user_id)}}}:{valid_id(kind, 'kind')}"


INSTANCES: Final = "gateway:instances"
"""Set of the instances that keep a liveness record (see `instance_alive`)."""


def instance_alive(instance_id: str) -> str:
    """Exists while the instance renews it (TTL: `--instance-ttl`)."""
    return f"gateway:alive:{{{valid_id(instance_id, 'instance_id')}}}"


def instance_leases(instance_id: str) -> str:
    """Set of "user-id connection-id": the leases the instance holds, ended by whichever
    instance claims them once its record lapsed. Same slot as its record."""
    return f"gateway:leases:{{{valid_id(instance_id, 'instance_id')}}}"


def gateway_epoch(instance_id: str) -> str:
    """Exists while Redis keeps what this instance wrote; gone after a restart without
    persistence or a flush, telling the instance to re-assert sessions and leases rather than
    take their absence for revocations."""
    return f"gateway:epoch:{{{valid_id(instance_id, 'instance_id')}}}"


# Pub/sub channels
def conversation_channel(conversation_id: uuid.UUID | str) -> str:
    return f"ch:conversation:{{{uuid_text(conversation_id, 'conversation_id')}}}"


def user_channel(user_id: uuid.UUID | str) -> str:
    return f"ch:user:{{{uuid_text(user_id, 'user_id')}}}"


def presence_channel(user_id: uuid.UUID | str) -> str:
    return f"ch:presence:{{{uuid_text(user_id, 'user_id')}}}"


def instance_channel(instance_id: str) -> str:
    return f"ch:instance:{{{valid_id(instance_id, 'instance_id')}}}"

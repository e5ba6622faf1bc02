"""Key names: the spec's format with braces kept as hash tags, ids validated first."""

from __future__ import annotations

import uuid

import pytest

from caches import keys
from caches.memo import bounded_memo
from caches.models import CachedMessage, SessionData, decode, encode

U = uuid.UUID("11111111-2222-3333-4444-555555555555")
C = uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")


def test_spec_key_names_keep_braces() -> None:
    """Every spec key is spelled as in its table, braces kept."""
    assert keys.session("s1") == "session:{s1}"
    assert keys.user_session(U, "s1") == f"user_session:{{{U}}}:{{s1}}"
    assert keys.blacklist_token("t1") == "blacklist:token:{t1}"
    assert keys.message("m1") == "message:{m1}"
    assert keys.conversation_messages(C) == f"conversation:messages:{{{C}}}"
    assert keys.unread(C, U) == f"unread:{{{C}}}:{{{U}}}"
    assert keys.presence(U) == f"presence:{{{U}}}"
    assert keys.lastseen(U) == f"lastseen:{{{U}}}"
    assert keys.typing(C, U) == f"typing:{{{C}}}:{{{U}}}"
    assert keys.user_conversations(U) == f"conversations:user:{{{U}}}"


def test_index_keys_share_their_entitys_hash_tag() -> None:
    """Index keys carry the same {id} as the entity, so one script may touch them together."""
    assert keys.presence_leases(U).endswith(f"{{{U}}}")
    assert keys.typing_index(C).endswith(f"{{{C}}}")
    assert keys.conversation_message_bodies(C).endswith(f"{{{C}}}")
    assert keys.user_conversation_data(U).endswith(f"{{{U}}}")


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "x" * 40, 42, None])
def test_malformed_uuid_rejected_before_key_is_built(bad: object) -> None:
    """A user or conversation id that is not a UUID raises ValueError naming it."""
    with pytest.raises(ValueError, match="user_id"):
        keys.presence(bad)  # type: ignore[arg-type]


def test_an_id_as_text_is_spelled_canonically_in_every_key() -> None:
    """Any spelling `uuid.UUID` takes names the same keys as the UUID (texts are remembered
    by how they were given; a remembered spelling still comes out canonical)."""
    for _ in range(2):  # the second time from the memo
        assert keys.uuid_text(str(U).upper(), "user_id") == str(U)
        assert keys.uuid_text(f"{{{U}}}", "user_id") == str(U)
        assert keys.unread(str(C).upper(), U.hex) == keys.unread(C, U)
        assert keys.valid_uuid(str(U).upper()) == U
    with pytest.raises(ValueError, match="member_id"):
        keys.uuid_text("not-a-uuid", "member_id")


@pytest.mark.parametrize("bad", ["", "a b", "a{b}", "a:b", "x" * 129, "é"])
def test_malformed_opaque_id_rejected(bad: str) -> None:
    """Session, token and message ids must be 1-128 URL-safe characters, no braces."""
    with pytest.raises(ValueError, match="session_id"):
        keys.session(bad)


def test_models_round_trip_through_json() -> None:
    """Models encode with RFC 3339 UTC timestamps and decode back equal."""
    session = SessionData(user_id=U, username="ann")
    text = encode(session)
    assert '"created_at":"' in text and text.count("Z") >= 2
    assert decode(SessionData, text) == session
    msg = CachedMessage(id="m1", conversation_id=C, sender_id=U, content="hi", seq=3)
    assert decode(CachedMessage, encode(msg)) == msg


def test_corrupt_value_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="corrupt cached SessionData"):
        decode(SessionData, "{not json")


def test_bounded_memo_keeps_a_cycling_working_set_below_its_bound() -> None:
    """Ids heard in turn (heartbeats of many users) are computed once each, however many times
    the cycle repeats; past the bound the memo starts over and stays correct."""
    calls: list[int] = []

    def square(n: int) -> int:
        calls.append(n)
        return n * n

    memo = bounded_memo(square, 100)
    for _ in range(5):
        assert [memo(n) for n in range(100)] == [n * n for n in range(100)]
    assert len(calls) == 100
    assert memo(100) == 100 * 100  # over the bound: cleared, recomputed from here on
    assert memo(3) == 9 and calls[-2:] == [100, 3]


def test_presence_step_names_the_same_keys_as_the_single_key_functions() -> None:
    user_text, step_keys = keys.presence_step(U)
    assert user_text == str(U)
    assert step_keys == [
        keys.presence(U),
        keys.presence_leases(U),
        keys.presence_conns(U),
        keys.lastseen(U),
    ]
    with pytest.raises(ValueError, match="user_id"):
        keys.presence_step("not-a-uuid")

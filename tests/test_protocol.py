"""The sans-I/O core: frame decoding, encoding, rate limiting and settings. No event loop."""

from __future__ import annotations

import uuid

import pytest

from gateway.config import ConfigError, Settings, load
from gateway.protocol import ErrorCode, ProtocolError, decode, envelope, events, frames
from gateway.protocol.events import ack, error, text_frame
from gateway.ratelimit import ABUSE_WINDOW, TokenBucket, record_rejection

U = "11111111-2222-3333-4444-555555555555"


def test_decode_gives_a_typed_frozen_frame() -> None:
    frame = decode(f'{{"type":"presence.subscribe","id":"a1","user_ids":["{U}","{U}"]}}')
    assert frame == frames.PresenceSubscribe("a1", (uuid.UUID(U),))  # deduplicated
    with pytest.raises(AttributeError):
        frame.id = "b2"  # type: ignore[misc]
    create = decode(
        f'{{"type":"conversation.create","kind":"group","member_ids":["{U.upper()}","{U}"]}}'
    )
    # Member ids stay canonical texts (lower case, no repeats) until the handler serves it.
    assert create == frames.ConversationCreate(None, "group", (str(uuid.UUID(U)),), "")
    assert decode('{"type":"presence.set","status":"away"}') == frames.PresenceSet(None, "away")


def test_every_frame_type_has_one_class() -> None:
    assert set(frames.FRAME_TYPES) == {
        "auth",
        "heartbeat",
        "presence.subscribe",
        "presence.unsubscribe",
        "presence.query",
        "presence.set",
        "typing.start",
        "typing.stop",
        "conversation.create",
        "message.send",
        "message.delivered",
        "message.read",
        "message.delete",
        "messages.list",
        "conversations.list",
        "conversation.unread",
        "conversation.pin",
        "conversation.mute",
    }
    assert all(cls.TYPE == name for name, cls in frames.FRAME_TYPES.items())


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff", ErrorCode.INVALID_JSON),
        ("null", ErrorCode.INVALID_FRAME),
        ('{"type": null}', ErrorCode.INVALID_FRAME),
        ('{"type": "x"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "heartbeat", "id": ""}', ErrorCode.INVALID_FIELD),
        ('{"type": "presence.set"}', ErrorCode.INVALID_FIELD),
        (
            '{"type": "presence.query", "user_ids": [' + ",".join([f'"{U}"'] * 1001) + "]}",
            ErrorCode.INVALID_FIELD,
        ),
        (
            '{"type": "conversation.create", "kind": "group", "member_ids": ["' + U + '"],'
            ' "name": "' + "n" * 201 + '"}',
            ErrorCode.INVALID_FIELD,
        ),
    ],
)
def test_decode_errors_carry_stable_codes(raw: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(raw)
    assert caught.value.code is code


def test_error_keeps_the_request_id() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode('{"type": "typing.start", "id": "r9"}')
    assert caught.value.request_id == "r9"
    assert caught.value.message == "conversation_id: required"


def test_encoders() -> None:
    assert events.typing(uuid.UUID(U), uuid.UUID(U), started=False, expires_in_ms=10) == (
        f'{{"type":"typing","conversation_id":"{U}","user_id":"{U}","state":"stop",'
        f'"expires_in_ms":0}}'.encode()
    )
    assert events.heartbeat_ack("h") == b'{"type":"heartbeat_ack","id":"h"}'
    assert events.session_revoked(events.EXPIRED) == (
        b'{"type":"session.revoked","reason":"session expired"}'
    )
    assert ack("r1", ok=True) == b'{"type":"ack","id":"r1","ok":true}'
    assert ack(None) == b'{"type":"ack"}'
    assert error(ErrorCode.FORBIDDEN, "no", "r2") == (
        b'{"type":"error","id":"r2","code":"forbidden","message":"no"}'
    )


def test_envelope_round_trip() -> None:
    user, conversation = uuid.uuid4(), uuid.uuid4()
    packed = envelope.pack(b'{"type":"x"}', exclude=user, join=conversation, seq=7)
    assert envelope.unpack(packed) == envelope.Envelope(
        str(user).encode(), conversation, 7, b'{"type":"x"}'
    )
    plain = envelope.unpack(envelope.pack(b"{|}"))  # a frame may contain the separator
    assert (plain.exclude, plain.join, plain.seq, plain.frame) == (b"", None, None, b"{|}")


@pytest.mark.parametrize(
    "payload", [b"", b"no separators", b"a|b", b"a|b|c", b"|not-a-uuid||{}", b"||x|{}"]
)
def test_envelope_rejects_what_it_did_not_pack(payload: bytes) -> None:
    with pytest.raises(ValueError):
        envelope.unpack(payload)


def test_revocation_schema() -> None:
    for revocation in (envelope.Revocation(session_id="s1"), envelope.Revocation(token_id="t1")):
        assert envelope.Revocation.from_json(revocation.to_json()) == revocation
    for bad in (b"[]", b"{}", b'{"session_id": 5}', b"nope"):
        with pytest.raises(ValueError):
            envelope.Revocation.from_json(bad)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frame_lengths(size: int) -> None:
    """Server frames follow RFC 6455 5.2: FIN+text, unmasked, 7/16/64-bit lengths."""
    frame = text_frame(b"x" * size)
    assert frame[0] == 0x81 and not frame[1] & 0x80
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(frame) == header + size
    if size >= 126:
        width = 2 if size < 65536 else 8
        assert int.from_bytes(frame[2 : 2 + width], "big") == size


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) is True  # one token back after half a second
    assert bucket.take(0.5) is False


def test_abuse_window() -> None:
    history: list[float] = []
    assert not record_rejection(history, 0.0, 3)
    assert not record_rejection(history, 1.0, 3)
    assert not record_rejection(history, ABUSE_WINDOW + 0.5, 3)  # the first fell out
    assert record_rejection(history, ABUSE_WINDOW + 0.6, 3)


def test_settings_from_flags_env_and_defaults() -> None:
    settings = load(None, {"GATEWAY_PORT": "9000", "GATEWAY_COMPRESSION": "true"})
    assert settings.listen.port == 9000 and settings.http.compression is True
    assert settings.presence.heartbeat_interval == 20.0 and settings.auth.session_ttl == 900.0
    assert Settings.flat(allowed_origins="https://a.example, https://b.example").http.origins == [
        "https://a.example",
        "https://b.example",
    ]
    assert Settings.flat(allowed_origins="*").http.origins is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GATEWAY_PORT": "http"}, "--port / GATEWAY_PORT"),
        ({"GATEWAY_COMPRESSION": "maybe"}, "--compression / GATEWAY_COMPRESSION"),
        ({"GATEWAY_LEASE_TTL": "5", "GATEWAY_HEARTBEAT_INTERVAL": "10"}, "--lease-ttl"),
        ({"GATEWAY_RATE_LIMIT": "-1"}, "--rate-limit / GATEWAY_RATE_LIMIT"),
    ],
)
def test_bad_settings_name_flag_and_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load(None, env)


C = "22222222-3333-4444-5555-666666666666"


BAD_MESSAGING_FRAMES: list[tuple[str, str]] = [
    ('{"type":"message.send","client_msg_id":"c","content":"x"}', "conversation_id"),
    (f'{{"type":"message.send","conversation_id":"{C}","content":"x"}}', "client_msg_id"),
    (f'{{"type":"message.send","conversation_id":"{C}","client_msg_id":"c"}}', "content"),
    (
        f'{{"type":"message.send","conversation_id":"{C}","client_msg_id":"{"c" * 65}",'
        '"content":"x"}',
        "client_msg_id",
    ),
    (
        f'{{"type":"message.send","conversation_id":"{C}","client_msg_id":"c",'
        '"content":"x","content_type":"exe"}',
        "content_type",
    ),
    (f'{{"type":"message.read","conversation_id":"{C}"}}', "message_id"),
    (f'{{"type":"message.delivered","conversation_id":"{C}","message_id":7}}', "message_id"),
    (
        f'{{"type":"message.delete","conversation_id":"x","message_id":"{C}"}}',
        "conversation_id",
    ),
    (f'{{"type":"messages.list","conversation_id":"{C}","limit":"10"}}', "limit"),
    (f'{{"type":"messages.list","conversation_id":"{C}","after_seq":1.5}}', "after_seq"),
    ('{"type":"conversations.list","limit":0}', "limit"),
    ('{"type":"conversation.unread","conversation_id":"c0ffee"}', "conversation_id"),
    (f'{{"type":"conversation.pin","conversation_id":"{C}"}}', "value"),
    (f'{{"type":"conversation.mute","conversation_id":"{C}","value":"yes"}}', "value"),
]
"""A malformed frame of each messaging type and the field its error must name."""


@pytest.mark.parametrize(("raw", "field"), BAD_MESSAGING_FRAMES)
def test_every_messaging_frame_names_its_bad_field(raw: str, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(raw)
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert caught.value.message.startswith(f"{field}:")

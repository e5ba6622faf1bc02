"""The sans-I/O core: frame decoding, encoding, rate limiting and settings. No event loop."""

from __future__ import annotations

import uuid

import pytest

from gateway.config import ConfigError, Settings, load
from gateway.protocol import ErrorCode, ProtocolError, ack, decode, error, event, text_frame
from gateway.ratelimit import ABUSE_WINDOW, TokenBucket, record_rejection

U = "11111111-2222-3333-4444-555555555555"


def test_decode_validates_and_types_fields() -> None:
    frame = decode(f'{{"type":"presence.subscribe","id":"a1","user_ids":["{U}","{U}"]}}')
    assert (frame.type, frame.id) == ("presence.subscribe", "a1")
    assert frame.fields["user_ids"] == [uuid.UUID(U)]  # deduplicated
    create = decode(f'{{"type":"conversation.create","kind":"group","member_ids":["{U}"]}}')
    assert create.fields == {"kind": "group", "member_ids": [uuid.UUID(U)]}


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
    assert event("typing", user_id=uuid.UUID(U)) == f'{{"type":"typing","user_id":"{U}"}}'.encode()
    assert ack("r1", ok=True) == b'{"type":"ack","id":"r1","ok":true}'
    assert ack(None) == b'{"type":"ack"}'
    assert error(ErrorCode.FORBIDDEN, "no", "r2") == (
        b'{"type":"error","id":"r2","code":"forbidden","message":"no"}'
    )


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
    assert settings.port == 9000 and settings.compression is True
    assert settings.heartbeat_interval == 20.0 and settings.session_ttl == 900.0
    assert Settings(allowed_origins="https://a.example, https://b.example").origins == [
        "https://a.example",
        "https://b.example",
    ]
    assert Settings(allowed_origins="*").origins is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GATEWAY_PORT": "http"}, "--port / GATEWAY_PORT"),
        ({"GATEWAY_COMPRESSION": "maybe"}, "--compression / GATEWAY_COMPRESSION"),
        ({"GATEWAY_LEASE_TTL": "5", "GATEWAY_HEARTBEAT_INTERVAL": "10"}, "--lease-ttl"),
        ({"GATEWAY_RATE_LIMIT": "-1"}, "--rate-limit / GATEWAY_RATE_LIMIT"),
        ({"GATEWAY_REDIS_URL": "redis+cluster://node:7000"}, "Redis Cluster is not supported"),
    ],
)
def test_bad_settings_name_flag_and_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        load(None, env)

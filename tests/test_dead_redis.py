"""A dead or hung Redis turns into a prompt, typed error: no call hangs."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from caches import CacheUnavailable, ClientOptions, PresenceCache, SessionCache, connect
from caches.errors import unavailable

FAST = ClientOptions(socket_timeout=0.2, connect_timeout=0.2, retries=1)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connection_is_a_connection_error() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}", FAST)
    started = time.monotonic()
    with pytest.raises(CacheUnavailable) as refused:
        await SessionCache(client).get("s1")
    assert isinstance(refused.value.__cause__, RedisConnectionError)
    assert time.monotonic() - started < 2
    await client.aclose()


async def test_hung_server_is_a_timeout_not_a_hang(silent_port: int) -> None:
    client = connect(f"redis://127.0.0.1:{silent_port}", FAST)
    started = time.monotonic()
    with pytest.raises(CacheUnavailable) as hung:
        await PresenceCache(client).connect(uuid.uuid4(), "c1")
    assert isinstance(hung.value.__cause__, RedisTimeoutError)
    assert time.monotonic() - started < 3
    with pytest.raises(CacheUnavailable):
        await PresenceCache(client).get_bulk_status([uuid.uuid4()])
    await client.aclose()


def test_a_write_on_a_closed_transport_is_unavailable_not_a_bug() -> None:
    """uvloop's RuntimeError for a transport the server closed means Redis is gone."""
    message = "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
    lost = unavailable(RuntimeError(message))
    assert isinstance(lost, CacheUnavailable)
    assert unavailable(RuntimeError("something else")) is None
    assert unavailable(ValueError("handler is closed")) is None


def test_a_stream_closed_under_a_command_is_unavailable_not_a_bug() -> None:
    """redis-py's `None.writelines` when a cluster node closed the connection a command had
    just taken (see the contract test); any other AttributeError stays a bug."""
    writer = None
    with pytest.raises(AttributeError) as closed:
        writer.writelines([b"PING"])  # type: ignore[attr-defined]
    assert isinstance(unavailable(closed.value), CacheUnavailable)
    with pytest.raises(AttributeError) as other:
        writer.hset  # type: ignore[attr-defined]  # noqa: B018
    assert unavailable(other.value) is None
    with pytest.raises(AttributeError) as typo:
        b"".writelines  # type: ignore[attr-defined]  # noqa: B018
    assert unavailable(typo.value) is None

"""What the hot paths take from redis-py and websockets beyond their documented APIs, checked
on the installed versions: an upgrade that changes any of it fails here, by name, before it
fails in production. The pins in pyproject.toml stop below the next minor release of each.

Kept because each is measured (docs/capacity.md, "Private parts kept"):
- `gateway/replies.py`: a redis-py connection's `_reader` / `_writer` streams and
  `redis._parsers.base.BaseParser.parse_error` (replies parsed by hiredis in bulk; commands
  written packed);
- `gateway/realtime/connection.py`: websockets' `transport` of a connection (one pre-framed
  server frame written to every recipient) and `send_data()` after the protocol's
  `send_text` (compressed connections).
"""

from __future__ import annotations

import asyncio
import collections
import importlib.metadata
import inspect

import pytest
from redis._parsers.base import BaseParser
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection as WsConnection
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from caches import SessionCache, connect, keys
from caches.redis import RedisClient
from gateway.protocol import events
from gateway.replies import ReplyStream, stream_writer
from loadtest.valkey_cluster import ValkeyCluster


def _minor(package: str) -> tuple[int, int]:
    major, minor = importlib.metadata.version(package).split(".")[:2]
    return int(major), int(minor)


def test_the_installed_versions_are_the_ones_these_contracts_were_written_for() -> None:
    assert _minor("redis") == (8, 1), "redis-py moved: re-check gateway/replies.py, then the pin"
    assert _minor("websockets") == (17, 4), (
        "websockets moved: re-check gateway/realtime/connection.py, then the pin"
    )


async def test_a_redis_py_connection_exposes_its_streams_once_connected(
    redis: RedisClient,
) -> None:
    pool = redis.connection_pool  # type: ignore[union-attr]
    connection: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
    await connection.connect()  # type: ignore[no-untyped-call]
    try:
        assert isinstance(getattr(connection, "_reader", None), asyncio.StreamReader)
        writer = stream_writer(connection)
        stream = ReplyStream(connection)
        writer.write(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n")
        replies: list[object] = []
        while len(replies) < 2:
            replies += await stream.read()
        assert replies == ["PONG", "hi"] or replies == [b"PONG", b"hi"]
    finally:
        await connection.disconnect()


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("NOSCRIPT No matching script.", NoScriptError),
        ("OOM command not allowed when used memory > 'maxmemory'.", OutOfMemoryError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", ResponseError),
    ],
)
def test_redis_py_turns_an_error_reply_into_its_exception(
    reply: str, kind: type[ResponseError]
) -> None:
    error = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]
    assert type(error) is kind


def test_the_auto_pipelines_constructors_are_redis_pys() -> None:
    """`Pipeline(pool, callbacks, transaction, shard_hint)`, as `Redis.pipeline` calls it."""
    from redis.asyncio.client import Pipeline

    parameters = list(inspect.signature(Pipeline.__init__).parameters)
    assert parameters[1:5] == ["connection_pool", "response_callbacks", "transaction", "shard_hint"]
    client = connect("redis://127.0.0.1:1")
    assert type(client.pipeline(transaction=False)) is Pipeline


async def test_a_pre_framed_text_frame_written_to_the_transport_reaches_a_client() -> None:
    received: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        assert ws.protocol.state is State.OPEN and not ws.protocol.extensions
        ws.transport.write(events.text_frame(b'{"type":"x"}'))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with ws_connect(f"ws://127.0.0.1:{port}", compression=None) as client:
            received.set_result(str(await client.recv()))
    assert received.result() == '{"type":"x"}'


def test_our_frames_are_the_bytes_websockets_would_write() -> None:
    for size in (0, 125, 126, 65535, 65536):
        payload = b"a" * size
        ours = events.text_frame(payload)
        theirs = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
        assert ours == theirs, size


async def test_a_compressed_connection_sends_through_send_text_and_send_data() -> None:
    assert callable(getattr(WsConnection, "send_data", None))

    async def handler(ws: ServerConnection) -> None:
        assert ws.protocol.extensions  # permessage-deflate negotiated
        ws.protocol.send_text(b'{"type":"y"}')
        ws.send_data()
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression="deflate") as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with ws_connect(f"ws://127.0.0.1:{port}", compression="deflate") as client:
            assert await client.recv() == '{"type":"y"}'


async def test_a_cluster_node_closing_its_free_connections_races_commands_taking_them(
    cluster: ValkeyCluster,
) -> None:
    """redis-py 8.1 closes a node's idle connections after a connection error on it (and its
    removed nodes' after a topology change) while other tasks may be taking them: a command
    then writes to a stream already gone, `None.writelines`, an AttributeError. The caches
    translate exactly that into `CacheUnavailable` (caches/errors.py); when redis-py raises a
    ConnectionError here instead, this contract fails and the translation can go."""
    client = RedisCluster.from_url(f"redis://127.0.0.1:{cluster.ports[0]}", max_connections=64)
    sessions = SessionCache(client)
    raw: collections.Counter[str] = collections.Counter()
    translated: collections.Counter[str] = collections.Counter()
    try:
        await client.initialize()
        node = client.get_node_from_key(keys.session("s"))
        assert node is not None

        async def one(round_: int) -> None:
            for _ in range(round_ % 4):
                await asyncio.sleep(0)
            try:
                await client.get(keys.session("s"))
            except Exception as exc:  # what redis-py lets out, as it is
                raw[type(exc).__name__] += 1
            try:
                await sessions.get("s")
            except Exception as exc:  # what the caches let out
                translated[type(exc).__name__] += 1

        for round_ in range(300):
            calls = [asyncio.create_task(one(round_ + n)) for n in range(20)]
            for _ in range(round_ % 5):
                await asyncio.sleep(0)
            closing = asyncio.create_task(node.disconnect_free_connections())
            await asyncio.gather(*calls, closing)
    finally:
        await client.aclose()
    assert raw["AttributeError"] > 0, raw  # redis-py's race, as of 8.1
    assert set(translated) <= {"CacheUnavailable"}, translated

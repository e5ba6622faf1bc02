"""The hot paths' I/O on redis-py connections: replies parsed by hiredis in bulk, and the
connection's stream for writes packed by hiredis.

redis-py opens the connection (URL, TLS, ACL user, db index, RESP version), so everything the
library honours is honoured; only the per-command machinery is skipped, which costs several
times what packing and parsing do when every event of the gateway passes through it. Use these
only on a connection nothing else reads or writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse

__all__ = ["ReplyStream", "stream_writer"]

_READ_SIZE = 1 << 16


def stream_writer(connection: AbstractConnection) -> asyncio.StreamWriter:
    """The open connection's stream, to write commands already packed."""
    writer = getattr(connection, "_writer", None)
    if not isinstance(writer, asyncio.StreamWriter):
        raise RedisConnectionError("connection is not open")
    return writer


class ReplyStream:
    """Replies in the order the server sends them."""

    def __init__(self, connection: AbstractConnection) -> None:
        reader = getattr(connection, "_reader", None)
        if not isinstance(reader, asyncio.StreamReader):
            raise RedisConnectionError("connection is not open")
        self._read = reader.read
        options: dict[str, Any] = {
            "protocolError": InvalidResponse,
            "replyError": BaseParser.parse_error,
        }
        encoder = connection.encoder
        if encoder.decode_responses:
            options["encoding"] = encoder.encoding
            options["errors"] = encoder.encoding_errors
        self._parser = hiredis.Reader(**options)

    async def read(self) -> list[Any]:
        """The replies of the next read from the socket (at least one); an error reply is
        an exception instance in the list.

        Raises:
            redis.ConnectionError: the server closed the connection.
        """
        parser = self._parser
        while True:
            data = await self._read(_READ_SIZE)
            if not data:
                raise RedisConnectionError("Redis closed the connection")
            parser.feed(data)
            replies = []
            while (reply := parser.gets()) is not False:
                replies.append(reply)
            if replies:
                return replies

"""Clients whose single commands are pipelined automatically.

A gateway issues many small, independent commands (a typing script, a lease renewal, a
publish) from many connections at once. Sent one by one, each costs a round trip and redis-py's
per-command machinery; here every command issued in one loop iteration leaves in one write.

One connection of its own (a redis-py `Connection` built from the client's parsed URL, so db
index, TLS, ACL user and timeouts are the client's), commands packed by hiredis, any number in
flight, replies parsed by hiredis in bulk and given redis-py's response callbacks, handed back
in order. A watchdog fails everything in flight when the oldest command has waited longer than
the deadline, so a hung server never holds a caller. A command whose connection is cut under it
goes once more on the next connection, as redis-py's retry would send it.

The client is a `redis.asyncio.Redis` subclass built by redis-py's own constructor on the
caller's connection pool, and its plain pipelines are `Pipeline`s built as redis-py's
`pipeline()` builds them: the caches use it unchanged.

On a Redis Cluster the same lane runs once per primary: a `RedisCluster` subclass sends every
command whose keys map to one slot through the lane of the node redis-py's slot map names for
that slot. Everything else (commands without keys or on several slots, MULTI pipelines, a slot
map not loaded yet) and every command the lane could not place (MOVED/ASK, TRYAGAIN,
CLUSTERDOWN, a connection to a node that died) takes redis-py's own path, which follows the
redirection, refreshes the slot map and retries as it always does; the lanes of nodes that are
no longer primaries are retired.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import (
    AskError,
    ClusterDownError,
    DataError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.metrics import Latency
from gateway.replies import ReplyStream, stream_writer
from gateway.tasks import first_to_end

__all__ = ["AutoPipeline", "ClusterLanes", "auto_pipelined", "cluster_auto_pipelined"]

log = logging.getLogger(__name__)

_MAX_BATCH = 1000
_BACKOFF_CAP = 1.0

_Call = tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]


class AutoPipeline(Protocol):
    def call(self, args: tuple[Any, ...], options: dict[str, Any]) -> asyncio.Future[Any]:
        """Queue one command; the future resolves to its reply (after redis-py's callbacks)."""
        ...

    async def run(self) -> None:
        """Send queued commands until cancelled; the owner runs it in its task group."""
        ...


async def _resolve(future: asyncio.Future[Any], pending: Awaitable[Any]) -> None:
    try:
        future.set_result(await pending)
    except Exception as exc:
        future.set_exception(exc)


def _fail(calls: collections.abc.Iterable[_Call], exc: BaseException) -> None:
    for _, _, future in calls:
        if not future.done():
            future.set_exception(exc)


class _Queued:
    """Callers queue their commands and wait; the sender takes what queued meanwhile."""

    def __init__(self) -> None:
        self._queue: list[_Call] = []
        self._wake = asyncio.Event()

    def call(self, args: tuple[Any, ...], options: dict[str, Any]) -> asyncio.Future[Any]:
        # A future, not a coroutine: one object less per command on the hottest path.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, options, future))
        self._wakeup()
        return future

    def _wakeup(self) -> None:
        self._wake.set()


class _Lane(_Queued):
    """Standalone: one connection, many commands in flight, replies in order."""

    def __init__(self, base: aioredis.Redis, deadline: float, retry_lost: bool = True) -> None:
        super().__init__()
        self.latency: Latency | None = None
        """Round trip of each command, observed when its reply is read (standalone only)."""
        self._base = base
        self._deadline = deadline
        self._retry_lost = retry_lost
        self._retried: set[asyncio.Future[Any]] = set()
        self._inflight: collections.deque[tuple[_Call, float]] = collections.deque()
        self._writer: asyncio.StreamWriter | None = None
        self._flush_scheduled = False

    def _wakeup(self) -> None:
        # Everything issued in this loop iteration leaves in one write, right after it.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def run(self) -> None:
        try:
            await self._connected_for_ever()
        finally:  # stopped (a retired cluster lane) between attempts: nothing may wait on
            self._settle_lost(retry=False)

    async def _connected_for_ever(self) -> None:
        backoff = 0.05
        while True:
            connection = self._new_connection()
            lost = False
            try:
                # Reads have no socket timeout here (see `_new_connection`): a handshake whose
                # reply never comes (a blackholed network) must not hold the lane for ever.
                async with asyncio.timeout(self._deadline):
                    await connection.connect()  # type: ignore[no-untyped-call]
                self._writer = stream_writer(connection)
                backoff = 0.05
                self._flush()  # what queued while connecting
                await first_to_end(self._read(connection), self._watch())
            except (RedisTimeoutError, TimeoutError) as exc:  # a server too slow: no retry
                log.warning("auto-pipeline: Redis did not answer: %s", exc or type(exc).__name__)
            except (RedisError, OSError) as exc:
                lost = self._writer is not None  # an established connection was cut
                log.warning("auto-pipeline: Redis connection lost: %s", exc or type(exc).__name__)
            except Exception:  # the task's edge: a surprise fails what is in flight, not the lane
                log.exception("auto-pipeline: unexpected failure; reconnecting")
            finally:
                self._writer = None
                self._settle_lost(retry=lost and self._retry_lost)
                await connection.disconnect(nowait=True)
            await asyncio.sleep(backoff)
            backoff = min(_BACKOFF_CAP, backoff * 2)

    def _settle_lost(self, retry: bool) -> None:
        """Fail what the ended connection owed. When it was cut (`retry`), what was in flight
        goes once more on the next connection, ahead of what queued since, as redis-py retries
        a command whose connection failed (the server may have run it: at least once, as there);
        a command already retried fails, and so does everything when the next connect fails."""
        owed = [call for call, _ in self._inflight]
        self._inflight.clear()
        lost = RedisConnectionError("Redis connection lost (auto-pipeline)")
        if not retry:
            _fail(owed, lost)
            _fail(self._queue, lost)
            self._queue.clear()
            self._retried = set()
            return
        again = [call for call in owed if call[2] not in self._retried]
        _fail((call for call in owed if call[2] in self._retried), lost)
        self._queue[:0] = again
        self._retried = {future for _, _, future in again}

    def _new_connection(self) -> AbstractConnection:
        pool = self._base.connection_pool
        # The client's parsed URL; reads wait without a socket timeout because the watchdog
        # bounds what is owed, and an idle connection owes nothing.
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        return pool.connection_class(**kwargs)

    def _flush(self) -> None:
        self._flush_scheduled = False
        writer = self._writer
        if writer is None or writer.is_closing() or not self._queue:
            return  # not connected: the queue waits for the connection, or fails with it
        queue, self._queue = self._queue, []
        packed: list[bytes] = []
        now = time.monotonic()
        for call in queue:
            args, _, future = call
            name = args[0]
            if isinstance(name, str) and " " in name:  # "SCRIPT LOAD": words go apart
                args = (*name.split(), *args[1:])
            try:
                packed.append(hiredis.pack_command(args))
            except TypeError as exc:  # an argument redis-py would refuse too
                future.set_exception(DataError(str(exc)))
                continue
            self._inflight.append((call, now))
        if packed:
            writer.write(b"".join(packed))

    async def _read(self, connection: AbstractConnection) -> None:
        stream = ReplyStream(connection)
        inflight = self._inflight
        latency = self.latency
        while True:
            replies = await stream.read()
            now = time.monotonic()
            for reply in replies:
                if not inflight:
                    raise RedisConnectionError("a reply nobody asked for (auto-pipeline)")
                (args, options, future), sent = inflight.popleft()
                if latency is not None:
                    latency.observe(now - sent)
                if not future.done():
                    result = self._settle(future, args[0], options, reply)
                    if result is not None:  # an awaitable callback (rare)
                        await result

    def _settle(
        self, future: asyncio.Future[Any], command: str, options: dict[str, Any], reply: Any
    ) -> Awaitable[None] | None:
        """What redis-py's `parse_response` does with a reply, for a reply already read."""
        try:
            if isinstance(reply, ResponseError):
                if EMPTY_RESPONSE not in options:
                    raise reply
                future.set_result(options[EMPTY_RESPONSE])
                return None
            callback = self._base.response_callbacks.get(command)
            if callback is not None:
                extra = {k: v for k, v in options.items() if k not in (EMPTY_RESPONSE, "keys")}
                reply = callback(reply, **extra)
                if inspect.isawaitable(reply):
                    return _resolve(future, reply)
            future.set_result(reply)
        except Exception as exc:  # the command's own error; the connection is fine
            if not future.done():
                future.set_exception(exc)
        return None

    async def _watch(self) -> None:
        """End the connection when the oldest command in flight is past the deadline."""
        while True:
            await asyncio.sleep(self._deadline / 4)
            if self._inflight and time.monotonic() - self._inflight[0][1] > self._deadline:
                raise RedisTimeoutError(f"Redis did not answer within {self._deadline}s")


class _Pipelined:
    """Mixed into a copy of the caller's client class: every command goes through the queue."""

    _auto: AutoPipeline

    def execute_command(self, *args: Any, **options: Any) -> Awaitable[Any]:
        if NEVER_DECODE in options:  # replies the lane would decode: the client's own path
            return super().execute_command(*args, **options)  # type: ignore[misc,no-any-return]
        return self._auto.call(args, options)


class _PipelinedRedis(_Pipelined, aioredis.Redis):  # type: ignore[misc]
    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        """A MULTI pipeline as redis-py makes it (its own pooled connection: atomic); a plain
        one through the lane, its commands contiguous on the wire, sharing the round trip of
        whatever else is in flight instead of waiting for a pooled connection."""
        if transaction:
            return super().pipeline(transaction=True, shard_hint=shard_hint)
        # redis-py's own `pipeline()` builds its Pipeline the same way.
        lane = _LanePipeline(self.connection_pool, self.response_callbacks, False, shard_hint)
        lane._auto = self._auto
        return lane


class _LanePipeline(Pipeline):
    _auto: AutoPipeline

    def execute_command(self, *args: Any, **options: Any) -> Pipeline:  # type: ignore[override]
        if NEVER_DECODE in options:
            raise DataError(f"{args[0]} cannot be pipelined through the lane (undecoded reply)")
        self.command_stack.append((args, options))
        return self

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, self.command_stack = self.command_stack, []
        calls = [self._auto.call(args, dict(options)) for args, options in stack]
        # All queued already: awaiting them in turn costs no extra round trip, and less than
        # a gather.
        results: list[Any] = []
        try:
            for call in calls:
                try:
                    results.append(await call)
                except Exception as exc:
                    results.append(exc)
        except BaseException:
            # The caller gave up (its budget): the rest are nobody's now. Cancelled, their
            # replies are skipped and their failures never logged as unretrieved.
            for call in calls:
                call.cancel()
            raise
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results


def auto_pipelined(
    client: aioredis.Redis, deadline: float = 2.0, latency: Latency | None = None
) -> tuple[aioredis.Redis, AutoPipeline]:
    """A client on `client`'s connection pool (its URL, TLS, ACL user, db, timeouts) whose
    commands are pipelined, and the sender to run.

    `deadline`: seconds a command may wait for its reply before it fails;
    `latency`: where each command's round trip is observed.
    """
    auto = _Lane(client, deadline)
    auto.latency = latency
    wrapped = _PipelinedRedis(connection_pool=client.connection_pool)
    wrapped._auto = auto
    return wrapped, auto


_REROUTED = (AskError, TryAgainError, ClusterDownError, RedisConnectionError)
"""What a lane answers for a command the node did not run (MOVED is an AskError), or may not
have run (the connection failed): redis-py's cluster path retries these on the node it finds."""

_RETIRE_INTERVAL = 1.0


class ClusterLanes:
    """One lane per primary, started on its first command, retired when the node no longer
    serves slots (its pending commands then fail over to redis-py's path)."""

    def __init__(
        self,
        cluster: RedisCluster,
        node_client: Callable[[str, int], aioredis.Redis],
        deadline: float,
        latency: Latency | None,
    ) -> None:
        self._cluster = cluster
        self._node_client = node_client
        self._deadline = deadline
        self._latency = latency
        self._lanes: dict[str, tuple[_Lane, asyncio.Task[None]]] = {}
        self._group: asyncio.TaskGroup | None = None

    def lane(self, node: ClusterNode) -> _Lane | None:
        """The lane to `node`, started if new; None while the sender is not running."""
        found = self._lanes.get(node.name)
        if found is not None:
            return found[0]
        if self._group is None:
            return None
        # No retry in the lane: redis-py's path retries on the node that serves the slot now.
        lane = _Lane(self._node_client(node.host, int(node.port)), self._deadline, False)
        lane.latency = self._latency
        self._lanes[node.name] = (lane, self._group.create_task(lane.run()))
        return lane

    def nodes(self) -> set[str]:
        """The nodes (`host:port`) with a lane."""
        return set(self._lanes)

    async def run(self) -> None:
        """Run the lanes until cancelled; the owner runs it in its task group."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                while True:
                    await asyncio.sleep(_RETIRE_INTERVAL)
                    self._retire()
        finally:
            self._group = None
            self._lanes.clear()

    def _retire(self) -> None:
        serving = {node.name for node in self._cluster.get_primaries()}
        for name in [name for name in self._lanes if name not in serving]:
            _, task = self._lanes.pop(name)
            task.cancel()


class _PipelinedCluster(RedisCluster):
    _lanes: ClusterLanes

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        lane = await self._lane_for(args, kwargs)
        if lane is not None:
            try:
                return await lane.call(args, kwargs)
            except _REROUTED:
                pass  # redis-py's path finds the slot's owner now
        return await super().execute_command(*args, **kwargs)

    async def _lane_for(self, args: tuple[Any, ...], options: dict[str, Any]) -> _Lane | None:
        """The lane of the primary serving the one slot of the command's keys, if any."""
        command = args[0]
        if (
            NEVER_DECODE in options
            or "target_nodes" in options
            or command in self.command_flags  # a command for several or any node
            or not self.nodes_manager.slots_cache  # the slot map is not loaded yet
        ):
            return None
        try:
            if command in ("EVALSHA", "EVAL"):  # the command parser cannot read their keys
                keys = args[3 : 3 + int(args[2])]
            else:
                keys = await self.commands_parser.get_keys(*args) or ()
            slots = {self.keyslot(key) for key in keys}
            if len(slots) != 1:
                return None
            node = self.nodes_manager.get_node_from_slot(slots.pop())
        except (RedisClusterException, RedisError, ValueError, IndexError):
            return None  # redis-py's path says what is wrong with the command
        return self._lanes.lane(node)


def cluster_auto_pipelined(
    connect: Callable[[type[RedisCluster]], RedisCluster],
    node_client: Callable[[str, int], aioredis.Redis],
    deadline: float = 2.0,
    latency: Latency | None = None,
) -> tuple[RedisCluster, ClusterLanes]:
    """A cluster client whose single-slot commands are pipelined per primary, and its lanes
    (whose `run` is the job to run).

    `connect(cls)`: the cluster client, built as a `cls` (URL, seeds and options the caller's);
    `node_client(host, port)`: a client for one node with the cluster's options (its lane takes
    the URL, TLS, ACL user and timeouts from it); `deadline` and `latency` as for
    `auto_pipelined`.
    """
    cluster = connect(_PipelinedCluster)
    assert isinstance(cluster, _PipelinedCluster)
    lanes = ClusterLanes(cluster, node_client, deadline, latency)
    cluster._lanes = lanes
    return cluster, lanes

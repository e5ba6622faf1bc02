"""At start the gateway raises its open-files soft limit to the hard limit (a socket is a
descriptor) and says in the log how many connections that leaves room for."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import SECRET, connect_or_refusal, token_for

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _gateway(
    redis_url: str, tmp_path: Path, limit: Callable[[], None]
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A gateway whose open-files limits `limit` set before it started: the process, its URL
    and its log."""
    log_path = tmp_path / "gw.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", "--redis-url", redis_url,
             "--jwt-secret", SECRET, "--store", str(tmp_path / "s.sqlite3")],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, preexec_fn=limit,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "listening on" in line
        yield proc, line.split("listening on ", 1)[1].split()[0], log_path
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _low_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def test_the_soft_limit_is_raised_and_the_room_logged(redis_url: str, tmp_path: Path) -> None:
    with _gateway(redis_url, tmp_path, _low_soft_limit) as (proc, _, log_path):
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft, hard = next(
            line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")
        )
        assert soft == hard
        assert f"open-files limit {soft}" in log_path.read_text()


_LIMIT = 200  # room for 100 connections (100 descriptors are kept for everything else)


def _low_hard_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_LIMIT, _LIMIT))


async def test_beyond_the_open_files_room_connections_are_refused_cleanly(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """`--max-connections` (50,000 by default) above what the open-files limit leaves room
    for: the room is the cap, so the connections past it are refused with 503 (or 1013), not
    left to fail in accept() when descriptors run out."""
    with _gateway(redis_url, tmp_path, _low_hard_limit) as (_, url, log_path):
        assert "room for about 100 connections" in log_path.read_text()
        outcomes = [await connect_or_refusal(url, await token_for(redis)) for _ in range(130)]
        held = [o for o in outcomes if isinstance(o, GatewayClient)]
        refused = [o for o in outcomes if not isinstance(o, GatewayClient)]
        try:
            assert len(held) == 100
            assert len(refused) == 30 and set(refused) <= {503, 1013}
        finally:
            for client in held:
                await client.close()

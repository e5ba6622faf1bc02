"""At start the gateway raises its open-files soft limit to the hard limit (a socket is a
descriptor) and says in the log how many connections that leaves room for."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from websockets.exceptions import ConnectionClosed, InvalidStatus

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import SECRET, token_for

ROOT = Path(__file__).resolve().parent.parent


def _low_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def test_the_soft_limit_is_raised_and_the_room_logged(redis_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "gw.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", "--redis-url", redis_url,
             "--jwt-secret", SECRET, "--store", str(tmp_path / "s.sqlite3")],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, preexec_fn=_low_soft_limit,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert b"listening on" in proc.stdout.readline()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft, hard = next(
            line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")
        )
        assert soft == hard
        assert f"open-files limit {soft}" in log_path.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _low_hard_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_LIMIT, _LIMIT))


_LIMIT = 200  # room for 100 connections (100 descriptors are kept for everything else)


async def test_beyond_the_open_files_room_connections_are_refused_cleanly(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """`--max-connections` (50,000 by default) above what the open-files limit leaves room
    for: the room is the cap, so the connections past it are refused with 503 (or 1013), not
    left to fail in accept() when descriptors run out."""
    log_path = tmp_path / "gw.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", "--redis-url", redis_url,
             "--jwt-secret", SECRET, "--store", str(tmp_path / "s.sqlite3")],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, preexec_fn=_low_hard_limit,
        )  # fmt: skip
    held: list[GatewayClient] = []
    refused: list[int] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        url = line.split("listening on ", 1)[1].split()[0]
        assert "room for about 100 connections" in log_path.read_text()
        for _ in range(130):
            token = await token_for(redis)
            try:
                held.append(await GatewayClient.connect(url, token))
            except InvalidStatus as exc:
                refused.append(exc.response.status_code)
            except ConnectionClosed as exc:
                assert exc.rcvd is not None
                refused.append(exc.rcvd.code)
        assert len(held) == 100
        assert len(refused) == 30 and set(refused) <= {503, 1013}
    finally:
        for client in held:
            await client.close()
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

"""Real gateway processes for integration tests: started by PID, on port 0, stopped after."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from caches import SessionCache
from caches.redis import RedisClient
from gateway.auth import mint_token
from gateway.client import GatewayClient

SECRET = "integration-test-secret-0123456789abcdef"

# Short settings so timeouts, grace and sweeps happen inside a test's deadline.
FAST = {
    "heartbeat_interval": "0.5",
    "lease_ttl": "1.5",
    "grace": "0.3",
    "sweep_interval": "0.3",
    "probe_interval": "0.5",
    "drain_timeout": "2",
}


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    url: str
    http: str
    log_path: Path
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def start_gateway(
    redis_url: str, workdir: Path, name: str = "gw", **settings: str
) -> GatewayProcess:
    """Start `presence-gateway serve` and wait for its ready line."""
    config = {**FAST, **settings}
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--port",
        "0",
        "--redis-url",
        redis_url,
        "--store",
        str(workdir / "store.sqlite3"),
        "--jwt-secret",
        SECRET,
        "--instance-id",
        f"{name}-{uuid.uuid4().hex[:6]}",
    ]
    for key, value in config.items():
        argv += ["--" + key.replace("_", "-"), value]
    log_path = workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, cwd=workdir, env=dict(os.environ)
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    line = b""
    while b"listening on" not in line:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
        if not ready or proc.poll() is not None:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            raise AssertionError(f"gateway did not start:\n{log_path.read_text()}")
        line = proc.stdout.readline()
    url = line.decode().split("listening on ", 1)[1].split()[0]
    http = url.replace("ws://", "http://").removesuffix("/ws")
    return GatewayProcess(proc, url, http, log_path, config)


@contextlib.contextmanager
def gateways(
    redis_url: str, workdir: Path, count: int = 1, **settings: str
) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    try:
        for index in range(count):
            started.append(start_gateway(redis_url, workdir, f"gw{index + 1}", **settings))
        yield started
    finally:
        for process in started:
            process.stop()


async def token_for(redis: RedisClient, user: uuid.UUID | None = None, ttl: float = 300) -> str:
    return await mint_token(SessionCache(redis), SECRET, user or uuid.uuid4(), ttl=ttl)


async def client_for(
    redis: RedisClient, gateway: GatewayProcess, user: uuid.UUID | None = None
) -> GatewayClient:
    return await GatewayClient.connect(gateway.url, await token_for(redis, user))

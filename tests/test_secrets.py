"""Secrets stay secret: the JWT secret from a file (never on the command line), /metrics on an
address of its own or behind a bearer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import SECRET, gateways, token_for
from tests.http_get import http_get

ROOT = Path(__file__).resolve().parent.parent


_get = http_get


async def test_the_secret_comes_from_a_file_and_never_shows_in_ps(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "jwt.secret"
    secret_file.write_text(SECRET + "\n")
    with gateways(redis_url, tmp_path, 1, jwt_secret="", jwt_secret_file=str(secret_file)) as (gw,):
        client = await GatewayClient.connect(gw.url, await token_for(redis))  # signed with it
        assert client.hello["type"] == "hello"
        cmdline = Path(f"/proc/{gw.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline
        await client.close()


def test_a_secret_file_that_cannot_be_read_stops_start_up_naming_the_setting(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--jwt-secret-file", str(tmp_path / "none")],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"--jwt-secret-file / GATEWAY_JWT_SECRET_FILE: cannot read it" in done.stderr


async def test_metrics_on_their_own_address_and_behind_a_bearer(
    redis_url: str, tmp_path: Path
) -> None:
    with gateways(
        redis_url, tmp_path, 1, metrics_host="127.0.0.1", metrics_token="scrape-me-0123"
    ) as (gw,):
        found = re.search(r"metrics: (http://\S+/metrics)", gw.ready_line)
        assert found is not None
        metrics_url = found.group(1)
        status, body = _get(f"{gw.http}/metrics", "scrape-me-0123")
        assert status == 404  # not on the public port
        status, body = _get(metrics_url)
        assert status == 401 and orjson.loads(body)["error"]["code"] == "unauthenticated"
        assert _get(metrics_url, "wrong-token")[0] == 401
        status, body = _get(metrics_url, "scrape-me-0123")
        assert status == 200 and b"gateway_connections" in body
        assert _get(metrics_url.replace("/metrics", "/healthz"))[0] == 404

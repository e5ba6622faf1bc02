"""`serve --dev`: the demo page, the development token route and its directory, the
same-origin rule for the page's WebSocket; none of it without `--dev`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from gateway.client import GatewayClient
from gateway.dev import dev_user_id
from tests.gateways import GatewayProcess, gateways
from tests.http_get import http_get


@pytest.fixture
def dev_gateway(redis_url: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    with gateways(redis_url, tmp_path, dev="true") as (gateway,):
        yield gateway


def test_the_ready_line_names_the_demo_page(dev_gateway: GatewayProcess) -> None:
    assert f"demo page: {dev_gateway.http}/demo/" in dev_gateway.ready_line


def test_the_page_and_the_sdk_are_served(dev_gateway: GatewayProcess) -> None:
    status, page = http_get(f"{dev_gateway.http}/demo/")
    assert status == 200 and b'<script type="module" src="app.js">' in page
    status, app = http_get(f"{dev_gateway.http}/demo/app.js")
    assert status == 200 and b'from "./sdk/index.js"' in app
    status, sdk = http_get(f"{dev_gateway.http}/demo/sdk/index.js")
    assert status == 200 and b"export class GatewayClient" in sdk
    assert http_get(f"{dev_gateway.http}/demo/missing.js")[0] == 404
    assert http_get(f"{dev_gateway.http}/demo/../gateway/dev.py")[0] == 404


async def test_a_dev_token_connects_as_the_named_user(
    dev_gateway: GatewayProcess, redis: object
) -> None:
    status, body = http_get(f"{dev_gateway.http}/dev/token?name=Alice")
    assert status == 200
    minted = orjson.loads(body)
    assert minted["user_id"] == str(dev_user_id("alice"))
    async with await GatewayClient.connect(dev_gateway.url, minted["token"]) as client:
        assert client.hello["user_id"] == minted["user_id"]
    status, body = http_get(f"{dev_gateway.http}/dev/users")
    assert status == 200
    assert {"user_id": minted["user_id"], "name": "Alice"} in orjson.loads(body)["users"]


@pytest.mark.parametrize(
    "query",
    ["", "?name=", "?user=not-a-uuid", "?name=a&ttl=1", "?name=a&ttl=x", "?name=" + "n" * 41],
)
def test_bad_token_requests_get_a_clear_400(dev_gateway: GatewayProcess, query: str) -> None:
    status, body = http_get(f"{dev_gateway.http}/dev/token{query}")
    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "invalid_field"


async def test_the_page_may_open_a_websocket_other_sites_may_not(
    dev_gateway: GatewayProcess,
) -> None:
    async with ws_connect(dev_gateway.url, origin=dev_gateway.http) as ws:  # type: ignore[arg-type]
        await ws.send('{"type": "heartbeat"}')  # admitted; waiting for its auth frame
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(dev_gateway.url, origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


def test_without_dev_there_is_no_page_and_no_token(redis_url: str, tmp_path: Path) -> None:
    with gateways(redis_url, tmp_path) as (gateway,):
        assert "demo" not in gateway.ready_line
        for path in ("/demo/", "/dev/token?name=alice", "/dev/users"):
            assert http_get(gateway.http + path)[0] == 404

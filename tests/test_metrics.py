"""`/metrics` as Prometheus scrapes it: valid exposition, bounded labels, and every family
moving when what it counts happens."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import GatewayProcess, gateways, token_for


def _scrape(gw: GatewayProcess) -> dict[str, float]:
    """Every sample, keyed `name{label="value",...}` (labels sorted)."""
    with urllib.request.urlopen(f"{gw.http}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_every_family_moves_when_it_should(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(
        redis_url, tmp_path, 1, rate_limit="1", rate_burst="5", rate_limit_close_after="3"
    ) as (gw,):
        before = _scrape(gw)
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await GatewayClient.connect(gw.url, await token_for(redis, ann), auto_heartbeat=False)
        await a.request("presence.subscribe", user_ids=[str(bob)])
        b = await GatewayClient.connect(gw.url, await token_for(redis, bob), auto_heartbeat=False)
        await a.next_event("presence")
        room = (await a.request("conversation.create", kind="direct", member_ids=[str(bob)]))[
            "conversation"
        ]["id"]
        await a.request("message.send", conversation_id=room, client_msg_id="m", content="hi")
        await b.next_event("message.new")
        await b.send_raw("{not json")
        await b.next_event("error")
        after = _scrape(gw)
        assert after["gateway_connections"] == 2
        assert after["gateway_asyncio_tasks"] >= 2  # at least each connection's handler
        moved = {
            'gateway_frames_in_total{type="presence.subscribe"}': 1,
            'gateway_frames_in_total{type="message.send"}': 1,
            'gateway_frames_in_total{type="invalid"}': 1,
            'gateway_frames_out_total{type="ack"}': 3,
            'gateway_frames_out_total{type="message.new"}': 2,
            'gateway_errors_total{code="invalid_json"}': 1,
            'gateway_presence_transitions_total{status="online"}': 2,
            "gateway_messages_persisted_total": 1,
            "gateway_connections_opened_total": 2,
        }
        for name, count in moved.items():
            assert after.get(name, 0) - before.get(name, 0) >= count, name
        for histogram in ("redis", "store", "fanout"):
            name = f"gateway_{histogram}_seconds_count"
            assert after[name] > before.get(name, 0), name
            assert f'gateway_{histogram}_seconds_bucket{{le="+Inf"}}' in after

        for _ in range(2):  # a miss, then a hit
            await b.request("messages.list", conversation_id=room)
            await b.request("conversations.list")
        after = _scrape(gw)
        for cache, op in (("messages", "history"), ("conversations", "list")):
            for result in ("hit", "miss"):
                name = (
                    f'gateway_cache_requests_total{{cache="{cache}",op="{op}",result="{result}"}}'
                )
                assert after[name] >= 1, name

        for n in range(20):  # past the bucket: rate limited, then closed 4008
            await b.send("presence.query", id=f"f{n}", user_ids=[str(ann)])
        assert await b.wait_closed() == 4008
        after = _scrape(gw)
        assert after["gateway_rate_limited_total"] >= 3
        assert after['gateway_closes_total{code="4008",reason="rate_limited"}'] == 1
        await a.close()


async def test_every_known_series_is_exported_from_the_start_at_zero(
    redis_url: str, tmp_path: Path
) -> None:
    """Prometheus' guidance: a series that appears only with its first event hides that event
    from `rate()` and from alerts on it."""
    with gateways(redis_url, tmp_path, 1) as (gw,):
        fresh = _scrape(gw)
        for series in (
            "gateway_messages_persisted_total",
            "gateway_rate_limited_total",
            'gateway_errors_total{code="conflict"}',
            'gateway_errors_total{code="unavailable"}',
            'gateway_closes_total{code="4008",reason="rate_limited"}',
            'gateway_refused_total{cap="max_pending_auth"}',
            'gateway_presence_transitions_total{status="away"}',
            'gateway_frames_in_total{type="message.send"}',
            'gateway_frames_out_total{type="message.new"}',
            'gateway_cache_requests_total{cache="messages",op="history",result="miss"}',
        ):
            assert fresh[series] == 0, series

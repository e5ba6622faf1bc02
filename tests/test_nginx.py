"""The compose file's load balancer, for real: Debian's nginx with `deploy/nginx.conf` (only the
upstream and listen addresses changed) in front of two gateway processes. Clients spread over
both instances, presence and typing cross them, one instance is drained and its clients come
back through the balancer, and no message is lost."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import GatewayProcess, gateways, token_for

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "nginx.conf"

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(300)]


def _nginx_binary() -> str:
    """nginx, installed from Debian's package when missing; a skip naming why otherwise."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("nginx is not installed and cannot be: needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "nginx-light"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
        if done.returncode != 0:
            pytest.skip(f"nginx could not be installed ({' '.join(command)}): {done.stderr[-300:]}")
    found = shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if not found:
        pytest.skip("nginx-light installed but no nginx binary found")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def balanced(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, list[GatewayProcess]]]:
    binary = _nginx_binary()
    with gateways(
        redis_url, tmp_path, 2, grace="2", drain_timeout="2", trusted_proxies="127.0.0.1"
    ) as started:
        port = _free_port()
        config = CONFIG.read_text()
        for name, gw in zip(("gateway1", "gateway2"), started, strict=True):
            config = config.replace(f"{name}:8080", gw.http.removeprefix("http://"))
        config = config.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        config = config.replace("worker_connections 65536;", "worker_connections 1024;")
        (tmp_path / "nginx.conf").write_text(config)
        (tmp_path / "logs").mkdir()
        proc = subprocess.Popen(
            [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e",
             str(tmp_path / "logs" / "error.log"), "-g",
             f"daemon off; pid {tmp_path}/nginx.pid; worker_processes 1;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not start: {proc.stderr.read()!r}")  # type: ignore[union-attr]
                time.sleep(0.05)
            yield f"ws://127.0.0.1:{port}/ws", started
        finally:
            proc.terminate()
            proc.communicate(timeout=10)


async def test_two_instances_behind_nginx(
    balanced: tuple[str, list[GatewayProcess]], redis: RedisClient
) -> None:
    url, (gw1, gw2) = balanced
    users = [uuid.uuid4() for _ in range(6)]
    tokens = [await token_for(redis, u) for u in users]
    clients = [await GatewayClient.connect(url, t) for t in tokens]
    where = {c.hello["instance_id"] for c in clients}
    assert where == {gw1.settings["instance_id"], gw2.settings["instance_id"]}  # spread

    # Presence and typing across the two instances.
    first = clients[0]
    other = next(c for c in clients if c.hello["instance_id"] != first.hello["instance_id"])
    other_user = other.hello["user_id"]
    watched = await first.request("presence.subscribe", user_ids=[str(u) for u in users])
    assert watched["presence"][other_user]["status"] == "online"
    room = (await first.request("conversation.create", kind="direct", member_ids=[other_user]))[
        "conversation"
    ]["id"]
    await other.next_event("conversation.added")
    await first.request("typing.start", conversation_id=room)
    typing = await other.next_event("typing")
    assert typing["user_id"] == first.hello["user_id"] and typing["state"] == "start"

    # Drain the instance `other` is on; it comes back through the balancer.
    drained = gw1 if other.hello["instance_id"] == gw1.settings["instance_id"] else gw2
    drained.proc.send_signal(signal.SIGTERM)
    sent = 0
    for n in range(10):
        await first.request(
            "message.send", conversation_id=room, client_msg_id=f"n{n}", content="x"
        )
        sent += 1
        await asyncio.sleep(0.05)

    async def come_back(client: GatewayClient) -> GatewayClient:
        """What a client does on `reconnect`: wait the hint, reconnect through the balancer."""
        hint = await client.next_event("reconnect", timeout=5)
        assert await client.wait_closed() == 1012
        await asyncio.sleep(hint["after_ms"] / 1000)
        return await GatewayClient.connect(
            url, tokens[users.index(uuid.UUID(client.hello["user_id"]))]
        )

    moved = [c for c in clients if c.hello["instance_id"] == drained.settings["instance_id"]]
    returned = await asyncio.gather(*(come_back(c) for c in moved))
    assert all(c.hello["instance_id"] != drained.settings["instance_id"] for c in returned)
    back = returned[moved.index(other)]
    history = await back.request("messages.list", conversation_id=room, after_seq=0, limit=100)
    assert [m["seq"] for m in history["messages"]] == list(range(1, sent + 1))  # none lost
    assert await asyncio.to_thread(drained.proc.wait, 10) == 0

    await asyncio.sleep(2.5)  # past the grace: nobody was seen offline
    while not first.events.empty():
        event = first.events.get_nowait()
        assert not (event["type"] == "presence" and event["status"] == "offline"), event
    for client in (*clients, *returned):
        if client not in moved:
            await client.close()

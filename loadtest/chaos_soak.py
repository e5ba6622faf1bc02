"""The chaos soak: instances, a Redis and a PostgreSQL under steady chat traffic from clients
that resume with the Python SDK, while a random fault strikes every so often; then everything
is checked from the store.

    python -m loadtest.chaos_soak --minutes 30          # `make chaos-soak`
    python -m loadtest.chaos_soak --minutes 1 --clients 40 --instances 2 --fault-every 6 12

Faults, one at a time, each given time to recover: Redis killed and restarted (empty), Redis
restarted, an instance SIGKILLed and started again, an instance drained (SIGTERM) and started
again, PostgreSQL restarted, every pub/sub connection cut (`CLIENT KILL TYPE pubsub`).

Checked at the end, once every outbox is empty: every acknowledged message was handed to every
member's client exactly once and in seq order, and the store holds exactly the acknowledged
messages, gap-free; presence shows every user online (every client is connected); the
instances' open files and asyncio tasks are back to their baseline, their memory within a
bound. A report (Markdown, JSON, plots: faults on a timeline against send latency and errors)
goes to loadtest/results/. Loopback only; everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from caches import SessionCache
from caches.redis import EmbeddedRedis, connect
from gateway.auth import mint_token
from gateway.sdk import Client, Outgoing
from loadtest.launcher import Launched, launch
from loadtest.postgres import PrivatePostgres, fresh_database, private_postgres
from loadtest.report import Report, machine
from loadtest.valkey_cluster import ValkeyCluster, free_ports

__all__ = ["ChaosResult", "run_chaos"]

SECRET = "chaos-soak-secret-0123456789abcdef0123456789"
ROOM = 5
FAULTS = ("kill an instance", "drain an instance", "restart PostgreSQL")
"""The faults of the instances and the store; each Redis deployment adds its own."""


class _SingleRedis:
    """One Valkey: killed (back empty after 1-3 s), restarted (empty at once), pub/sub cut."""

    faults = ("kill Redis", "restart Redis", "cut pub/sub")

    def __init__(self, server: EmbeddedRedis) -> None:
        self.server = server
        self.url = server.tcp_url or ""
        self.ports = [urlsplit(self.url).port]

    async def inject(self, name: str, down: float, chance: random.Random) -> None:
        if name == "kill Redis":
            self.server.kill()
            await asyncio.sleep(down)
            await asyncio.to_thread(self.server.restart)
        elif name == "restart Redis":
            await asyncio.to_thread(self.server.restart)
        else:
            await _cut_pubsub(self.url)


class _ClusterRedis:
    """A 3 primary + 3 replica Valkey Cluster: a primary killed (its replica takes over; the
    node comes back 1-3 s later as a replica), pub/sub connections cut on every primary."""

    faults = ("kill a cluster primary", "cut pub/sub")

    def __init__(self, cluster: ValkeyCluster) -> None:
        self.cluster = cluster
        self.url = cluster.url
        self.ports = list(cluster.ports)

    async def inject(self, name: str, down: float, chance: random.Random) -> None:
        cluster = self.cluster
        primaries = await asyncio.to_thread(cluster.primary_ports)
        if name == "kill a cluster primary":
            port = chance.choice(primaries)
            await asyncio.to_thread(cluster.kill, port)
            await asyncio.to_thread(cluster.wait_failover, port)
            await asyncio.sleep(down)
            await asyncio.to_thread(cluster.restart, port)
        else:
            for port in primaries:
                await _cut_pubsub(f"redis://127.0.0.1:{port}")


async def _cut_pubsub(url: str) -> None:
    client = connect(url)
    with contextlib.suppress(Exception):
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await client.aclose()


_RedisDeployment = _SingleRedis | _ClusterRedis


@dataclass
class ChaosResult:
    minutes: float
    instances: int
    clients: int
    faults: list[tuple[float, str]]
    acknowledged: int
    send_p50_ms: float
    send_p99_ms: float
    send_max_ms: float
    delivered_exactly_once: bool
    missing: int
    duplicated: int
    out_of_order: int
    store_matches_acks: bool
    presence_matches: bool
    open_files: tuple[int, int]
    tasks: tuple[int, int]
    rss_mib: tuple[float, float]
    problems: list[str] = field(default_factory=list)
    timeline: _Timeline | None = None


@dataclass
class _Timeline:
    """For the report's plot: each send (seconds from the start, send->ack seconds), the
    SDK's error events, the faults."""

    sends: list[tuple[float, float]]
    errors: list[float]
    faults: list[tuple[float, str]]


class _Fleet:
    """The instances, each on a port of its own that survives its restarts."""

    def __init__(self, count: int, workdir: Path, redis: _RedisDeployment, store_url: str) -> None:
        self.ports = free_ports(count)
        self.workdir = workdir
        self.engine_ports = {*redis.ports, urlsplit(store_url).port}
        self.settings = {
            "redis_url": redis.url,
            "store": store_url,
            "jwt_secret": SECRET,
            "redis_timeout": "1",
            "heartbeat_interval": "2",
            "lease_ttl": "8",
            "grace": "1",
            "instance_ttl": "3",
            "drain_timeout": "2",
            "user_send_rate": "1000",
            "user_send_burst": "1000",
            "log_level": "warning",
        }
        self.running: list[Launched | None] = [None] * count
        self.exits: list[str] = []
        """Instances that ended without being told to (a crash), with their last words."""

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/ws" for port in self.ports]

    def start(self, index: int) -> None:
        config = {**self.settings, "port": str(self.ports[index])}
        log = self.workdir / f"gw{index}.log"
        self.running[index] = launch(config, self.workdir, log, timeout=30)

    def stop(self, index: int, sig: int = 15) -> None:
        process = self.running[index]
        if process is not None:
            process.stop(sig)
        self.running[index] = None

    def alive(self) -> list[Launched]:
        return [p for p in self.running if p is not None]

    def restart_exited(self) -> None:
        """Note an instance that ended on its own and start it again, as its supervisor
        would: the soak goes on, the report names the crash."""
        for index, process in enumerate(self.running):
            if process is None or process.proc.poll() is None:
                continue
            lines = process.log().splitlines()
            errors = [line for line in lines if "Error" in line or "Exception" in line]
            last = (errors or lines or ["no log"])[-1].strip()
            self.exits.append(
                f"gw{index} exited on its own (code {process.proc.returncode}): {last[-300:]}"
            )
            process.stop()
            self.start(index)

    def census(self) -> list[dict[str, int]]:
        """Per instance, its descriptors by what they are: clients, connections by the port
        they reach, listeners, the rest (to say where growth went)."""
        found = []
        for process in self.alive():
            proc = psutil.Process(process.pid)
            kinds = {"descriptors": proc.num_fds()}
            sockets = 0
            for fd in Path(f"/proc/{process.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    sockets += fd.readlink().name.startswith("socket:")
            listed = proc.net_connections(kind="all")
            # A socket the kernel lists nowhere is closed on the wire but not by this process.
            kinds["sockets closed but held"] = sockets - len(listed)
            for conn in listed:
                if conn.raddr and isinstance(conn.raddr, tuple):
                    if conn.laddr[1] in self.ports:
                        kind = "clients"
                    else:
                        kind = f"to port {conn.raddr[1]} ({conn.status})"
                else:
                    kind = f"unconnected ({conn.status})"
                kinds[kind] = kinds.get(kind, 0) + 1
            found.append(kinds)
        return found

    def sample(self) -> tuple[int, int, float]:
        """Open files (less the pools' connections to Redis and PostgreSQL, which grow and
        shrink with the load), asyncio tasks and RSS (MiB) of every running instance, summed."""
        files = tasks = 0
        rss = 0.0
        engines = self.engine_ports
        for process in self.alive():
            proc = psutil.Process(process.pid)
            pooled = sum(
                1
                for conn in proc.net_connections(kind="tcp")
                if conn.raddr and conn.raddr[1] in engines
            )
            files += proc.num_fds() - pooled
            rss += proc.memory_info().rss / 2**20
            tasks += int(process.metric("gateway_asyncio_tasks"))
        return files, tasks, rss


@dataclass
class _Member:
    user_id: str
    client: Client
    received: dict[str, list[int]] = field(default_factory=dict)


@contextlib.contextmanager
def _engines(redis_kind: str) -> Iterator[tuple[_RedisDeployment, PrivatePostgres, str]]:
    with contextlib.ExitStack() as stack:
        redis: _RedisDeployment
        if redis_kind == "cluster":
            redis = _ClusterRedis(stack.enter_context(ValkeyCluster()))
        else:
            (port,) = free_ports(1)
            redis = _SingleRedis(stack.enter_context(EmbeddedRedis(tcp_port=port)))
        postgres = stack.enter_context(private_postgres())
        yield redis, postgres, fresh_database(postgres.url)


async def run_chaos(
    minutes: float,
    clients: int,
    instances: int,
    fault_every: tuple[float, float],
    rate: float,
    seed: int = 7,
    redis_kind: str = "single",
) -> ChaosResult:
    """`redis_kind`: one Valkey (`single`) or a 3+3 Valkey Cluster (`cluster`)."""
    chance = random.Random(seed)
    with (
        tempfile.TemporaryDirectory(prefix="chaos-") as tmp,
        _engines(redis_kind) as (redis, postgres, store_url),
    ):
        fleet = _Fleet(instances, Path(tmp), redis, store_url)
        for index in range(instances):
            fleet.start(index)
        try:
            return await _soak(
                fleet,
                redis,
                postgres,
                minutes,
                clients,
                fault_every,
                rate,
                chance,
            )
        finally:
            for index in range(instances):
                fleet.stop(index)


async def _soak(
    fleet: _Fleet,
    redis: _RedisDeployment,
    postgres: PrivatePostgres,
    minutes: float,
    clients: int,
    fault_every: tuple[float, float],
    rate: float,
    chance: random.Random,
) -> ChaosResult:
    users = [uuid.uuid4() for _ in range(clients)]
    admin = connect(redis.url)
    faults_possible = redis.faults + FAULTS
    errors: list[float] = []
    members: list[_Member] = []
    for user in users:
        # Each client starts on another instance and tries the others in turn.
        order = fleet.urls[len(members) % len(fleet.urls) :] + fleet.urls
        client = Client(urls=order, get_token=_token_source(admin, user), max_reconnect_delay=2.0)
        members.append(_Member(str(user), client))
        client.on("message", _recorder(members[-1]))
        client.on("error", lambda _: errors.append(time.monotonic()))
    await asyncio.gather(*(m.client.connect(timeout=30) for m in members))
    rooms: list[tuple[str, list[_Member]]] = []
    for start in range(0, len(members), ROOM):
        group = members[start : start + ROOM]
        created = await group[0].client.create_conversation(
            [m.user_id for m in group[1:]], name=f"room {start // ROOM}"
        )
        rooms.append((created["conversation"]["id"], group))
    sends: list[tuple[float, Outgoing]] = []
    acked_at: dict[str, float] = {}
    faults: list[tuple[float, str]] = []
    started = time.monotonic()
    until = started + minutes * 60
    # The baseline after a warm-up of traffic without faults (the pools have grown to the load).
    warmup = min(10.0, minutes * 60 / 6)
    next_fault = started + warmup + chance.uniform(*fault_every)
    base: tuple[int, int, float] | None = None
    pending: asyncio.Task[None] | None = None
    next_check = started
    while time.monotonic() < until:
        if base is None and time.monotonic() >= started + warmup:
            base = fleet.sample()
        room, group = chance.choice(rooms)
        sender = chance.choice(group)
        outgoing = sender.client.send(room, f"{len(sends)}")
        outgoing.sent.add_done_callback(functools.partial(_stamp, acked_at, outgoing))
        sends.append((time.monotonic(), outgoing))
        if pending is None and time.monotonic() >= next_fault:
            name = chance.choice(faults_possible)
            faults.append((time.monotonic() - started, name))
            pending = asyncio.create_task(_inject(name, fleet, redis, postgres, chance))
            next_fault = time.monotonic() + chance.uniform(*fault_every)
        if pending is not None and pending.done():
            pending.result()
            pending = None
        if pending is None and time.monotonic() >= next_check:
            # (While a fault runs, an instance it stopped is not a crash.)
            await asyncio.to_thread(fleet.restart_exited)
            next_check = time.monotonic() + 1.0
        await asyncio.sleep(1 / rate)
    if pending is not None:
        await pending
    await asyncio.to_thread(fleet.restart_exited)

    problems: list[str] = [*fleet.exits]
    await _all_acknowledged([o for _, o in sends], problems)
    acked = [o.sent.result() for _, o in sends if o.sent.done() and not o.sent.exception()]
    latencies = [acked_at[o.client_msg_id] - at for at, o in sends if o.client_msg_id in acked_at]
    expected = await _expected_per_room(rooms, problems)
    missing, duplicated, out_of_order = await _delivered(rooms, expected, problems)
    by_id = {m["client_msg_id"] for m in acked}
    stored_ids = {m["client_msg_id"] for messages in expected.values() for m in messages}
    store_ok = by_id == stored_ids
    if not store_ok:
        problems.append(f"store and acks differ: {len(by_id ^ stored_ids)} messages")
    presence_ok = await _presence_matches(members, problems)
    # Connections a client replaced while their instance could not answer are closed by the
    # instance when their lease runs out: the final sample waits for one connection a client.
    await _connections_settled(fleet, clients, problems)
    assert base is not None
    end = await _settled_sample(fleet, base)
    _back_to_baseline(base, end, problems)
    if problems:
        problems.append(f"descriptors at the end: {fleet.census()}")
    for member in members:
        await member.client.close()
    await admin.aclose()
    ordered = sorted(latencies)
    timeline = _Timeline(
        [(at - started, acked_at.get(o.client_msg_id, at) - at) for at, o in sends],
        [t - started for t in errors],
        faults,
    )
    return ChaosResult(
        minutes=minutes,
        instances=len(fleet.ports),
        clients=clients,
        faults=faults,
        acknowledged=len(acked),
        send_p50_ms=_pct(ordered, 0.5),
        send_p99_ms=_pct(ordered, 0.99),
        send_max_ms=ordered[-1] * 1000 if ordered else 0.0,
        delivered_exactly_once=not (missing or duplicated or out_of_order),
        missing=missing,
        duplicated=duplicated,
        out_of_order=out_of_order,
        store_matches_acks=store_ok,
        presence_matches=presence_ok,
        open_files=(base[0], end[0]),
        tasks=(base[1], end[1]),
        rss_mib=(round(base[2], 1), round(end[2], 1)),
        problems=problems,
        timeline=timeline,
    )


def _back_to_baseline(
    base: tuple[int, int, float], end: tuple[int, int, float], problems: list[str]
) -> None:
    """Descriptors (the engines' pools aside) and tasks within a few of the baseline, with the
    same connections open (one leaked per reconnect would be hundreds), memory within half
    again."""
    if end[0] > base[0] + 10:
        problems.append(f"open files grew from {base[0]} to {end[0]}")
    if end[1] > base[1] + 10:
        problems.append(f"asyncio tasks grew from {base[1]} to {end[1]}")
    if end[2] > base[2] * 1.5:
        problems.append(f"memory grew from {base[2]:.0f} to {end[2]:.0f} MiB")


async def _connections_settled(
    fleet: _Fleet, clients: int, problems: list[str], timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        open_now = sum(int(p.metric("gateway_connections")) for p in fleet.alive())
        if open_now == clients:
            return
        if time.monotonic() > deadline:
            problems.append(f"{open_now} connections open for {clients} clients")
            return
        await asyncio.sleep(0.5)


async def _settled_sample(
    fleet: _Fleet, base: tuple[int, int, float], timeout: float = 30.0
) -> tuple[int, int, float]:
    """The final sample, once descriptors are back within the bound or `timeout` passed: a
    socket whose peer went away moments ago is released when its closing handshake times out
    (seconds), a leaked one never is."""
    deadline = time.monotonic() + timeout
    while True:
        end = fleet.sample()
        if end[0] <= base[0] + 10 or time.monotonic() > deadline:
            return end
        await asyncio.sleep(1.0)


def _stamp(acked_at: dict[str, float], outgoing: Outgoing, _: object) -> None:
    acked_at.setdefault(outgoing.client_msg_id, time.monotonic())


def _token_source(admin: Any, user: uuid.UUID) -> Any:
    """A fresh session and token each time: a Redis that came back empty lost the last one."""

    async def get() -> str:
        return await mint_token(SessionCache(admin), SECRET, user, ttl=3600)

    return get


def _recorder(member: _Member) -> Any:
    def record(message: dict[str, Any]) -> None:
        member.received.setdefault(message["conversation_id"], []).append(int(message["seq"]))

    return record


async def _inject(
    name: str,
    fleet: _Fleet,
    redis: _RedisDeployment,
    postgres: PrivatePostgres,
    chance: random.Random,
) -> None:
    """One fault, and its end (what was stopped is started again)."""
    down = chance.uniform(1.0, 3.0)
    if name in ("kill an instance", "drain an instance"):
        index = chance.randrange(len(fleet.ports))
        await asyncio.to_thread(fleet.stop, index, 9 if name.startswith("kill") else 15)
        await asyncio.sleep(down)
        await asyncio.to_thread(fleet.start, index)
    elif name == "restart PostgreSQL":
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(postgres.start)
    else:
        await redis.inject(name, down, chance)


async def _all_acknowledged(
    sends: list[Outgoing], problems: list[str], timeout: float = 60.0
) -> None:
    """Every send acknowledged: the outboxes drain once the faults are over."""
    futures = [o.sent for o in sends]
    if not futures:
        return
    _, waiting = await asyncio.wait(futures, timeout=timeout)
    failed = sum(1 for f in futures if f.done() and f.exception() is not None)
    if waiting or failed:
        problems.append(f"{len(waiting)} sends never acknowledged, {failed} refused")


async def _expected_per_room(
    rooms: list[tuple[str, list[_Member]]], problems: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each room's messages as the store holds them, gap-free."""
    found: dict[str, list[dict[str, Any]]] = {}
    for room, group in rooms:
        messages: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await group[0].client.request(
                "messages.list", conversation_id=room, after_seq=after, limit=100
            )
            messages += page["messages"]
            if not page["messages"] or not page.get("has_more"):
                break
            after = page["messages"][-1]["seq"]
        seqs = [m["seq"] for m in messages]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"room {room}: the store's seqs are not gap-free")
        found[room] = messages
    return found


async def _delivered(
    rooms: list[tuple[str, list[_Member]]],
    expected: dict[str, list[dict[str, Any]]],
    problems: list[str],
    timeout: float = 60.0,
) -> tuple[int, int, int]:
    """Every member's client handed every message of its room once, in order (waiting for
    the last resumes to catch up)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = duplicated = out_of_order = 0
        for room, group in rooms:
            want = [m["seq"] for m in expected[room]]
            for member in group:
                got = member.received.get(room, [])
                missing += len(set(want) - set(got))
                duplicated += len(got) - len(set(got))
                out_of_order += sum(1 for a, b in zip(got, got[1:], strict=False) if b <= a)
        if not missing or time.monotonic() > deadline:
            break
        for _, group in rooms:
            for member in group:
                for room in member.client.positions():
                    with contextlib.suppress(Exception):
                        await member.client.catch_up(room)
        await asyncio.sleep(0.5)
    if missing or duplicated or out_of_order:
        problems.append(
            f"deliveries: {missing} missing, {duplicated} twice, {out_of_order} out of order"
        )
    return missing, duplicated, out_of_order


async def _presence_matches(members: list[_Member], problems: list[str]) -> bool:
    """Every user has a connected client: every user shows online."""
    asker = members[0].client
    ids = [m.user_id for m in members]
    deadline = time.monotonic() + 30
    while True:
        offline = []
        for start in range(0, len(ids), 100):
            answer = await asker.request("presence.query", user_ids=ids[start : start + 100])
            offline += [u for u, p in answer["presence"].items() if p["status"] != "online"]
        if not offline:
            return True
        if time.monotonic() > deadline:
            problems.append(f"{len(offline)} connected users not shown online")
            return False
        await asyncio.sleep(0.5)


def _plot(report: Report, timeline: _Timeline) -> None:
    """Per second: the slowest send->ack and the SDK's error events; each fault a spike."""
    slowest: dict[int, float] = {}
    for at, latency in timeline.sends:
        slowest[int(at)] = max(slowest.get(int(at), 0.0), latency * 1000)
    errors: dict[int, int] = {}
    for at in timeline.errors:
        errors[int(at)] = errors.get(int(at), 0) + 1
    seconds = sorted(slowest)
    top = max(slowest.values(), default=1.0)
    spikes_x: list[float] = []
    spikes_y: list[float] = []
    for at, _ in timeline.faults:
        spikes_x += [at, at, at]
        spikes_y += [0.0, top, 0.0]
    report.plot(
        "timeline",
        "faults against send->ack latency and client errors",
        "seconds from the start",
        "ms / errors per second",
        {
            "slowest send->ack, ms": ([float(s) for s in seconds], [slowest[s] for s in seconds]),
            "SDK error events / s": (
                [float(s) for s in seconds],
                [float(errors.get(s, 0)) for s in seconds],
            ),
            "fault": (spikes_x, spikes_y),
        },
    )


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _result_rows(result: ChaosResult) -> list[list[str]]:
    """The run's outcome as the report's table: what was checked and what was measured."""

    def verdict(ok: bool) -> str:
        return "yes" if ok else "NO"

    counts = Counter(name for _, name in result.faults)
    return [
        ["faults", ", ".join(f"{name} x{n}" for name, n in counts.most_common())],
        ["messages acknowledged", f"{result.acknowledged:,}"],
        [
            "each delivered to every member exactly once, in order",
            verdict(result.delivered_exactly_once),
        ],
        [
            "missing / duplicated / out of order",
            f"{result.missing} / {result.duplicated} / {result.out_of_order}",
        ],
        ["store == acknowledged (gap-free)", verdict(result.store_matches_acks)],
        ["every connected user online at the end", verdict(result.presence_matches)],
        [
            "send->ack p50 / p99 / max",
            f"{result.send_p50_ms:.1f} / {result.send_p99_ms:.0f} / {result.send_max_ms:.0f} ms",
        ],
        ["open files, warm -> end", "{} -> {}".format(*result.open_files)],
        ["tasks, warm -> end", "{} -> {}".format(*result.tasks)],
        ["RSS, warm -> end", "{:.1f} -> {:.1f} MiB".format(*result.rss_mib)],
        ["problems", "; ".join(result.problems) or "none"],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--fault-every", type=float, nargs=2, default=(20.0, 60.0))
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s, all clients")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--redis",
        choices=("single", "cluster"),
        default="single",
        help="one Valkey or a 3+3 cluster",
    )
    args = parser.parse_args(argv)
    report = Report(
        "chaos-soak" if args.redis == "single" else f"chaos-soak-{args.redis}",
        f"chaos soak: {machine()}; {args.instances} instances, {args.clients} clients (Python "
        f"SDK, rooms of {ROOM}), {args.rate:g} messages/s, a fault every "
        f"{args.fault_every[0]:g}-{args.fault_every[1]:g} s for {args.minutes:g} minutes; "
        f"Redis: {'a 3+3 Valkey Cluster' if args.redis == 'cluster' else 'one Valkey'}",
    )
    result = asyncio.run(
        run_chaos(
            args.minutes,
            args.clients,
            args.instances,
            (args.fault_every[0], args.fault_every[1]),
            args.rate,
            args.seed,
            args.redis,
        )
    )
    timeline, result.timeline = result.timeline, None
    report.run("soak", result)
    report.table("result", ["figure", "value"], _result_rows(result))
    if timeline is not None:
        _plot(report, timeline)
    for at, name in result.faults:
        report.note(f"fault at {at:.0f} s: {name}")
    report.write()
    return 0 if not result.problems else 1


if __name__ == "__main__":
    sys.exit(main())

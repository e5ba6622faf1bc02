"""Benchmarks: `python loadtest/bench.py caches | fanout | publish | messages | abuse | heartbeats |
storm | soak | idle` (see --help). Each writes a report (JSON, Markdown, PNG plots) under
loadtest/results/.

Every benchmark starts what it needs (an embedded Valkey unless GATEWAY_REDIS_URL is set), runs
bounded in count and time against loopback only, and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import resource
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from caches.redis import configured_or_embedded, connect
from loadtest.bench_abuse import run_abuse
from loadtest.bench_caches import CaseResult, run_cases
from loadtest.bench_fanout import FLOOR, GATEWAY, FanoutResult, run_fanout
from loadtest.bench_fill import FillResult, run_fill_cases
from loadtest.bench_messages import MessagesResult, run_messages
from loadtest.bench_publish import DEPLOYMENTS, run_publish
from loadtest.bench_scale import (
    DrainStormResult,
    IdleResult,
    held_by_one_gateway,
    run_drain_storm,
    run_heartbeats,
    run_idle,
    run_storm,
)
from loadtest.bench_soak import SoakResult, run_soak
from loadtest.postgres import fresh_database, private_postgres
from loadtest.report import Report, Row, machine
from loadtest.stats import median, median_of

_R = TypeVar("_R")
_CLIENTS_HELP = (
    "load-generator processes holding the connections (default: as many as this process's "
    "open-files limit needs, one socket each)"
)


async def caches_main(args: argparse.Namespace) -> None:
    report = Report(
        "caches",
        f"caches benchmark: {machine()}; {args.runs} runs x {args.seconds}s per case, "
        f"{args.concurrency} concurrent callers; medians over runs",
    )
    with configured_or_embedded(os.environ.get("GATEWAY_REDIS_URL")) as url:
        client = connect(url)
        runs: list[list[CaseResult]] = []
        fills: list[list[FillResult]] = []
        for run in range(args.runs):
            runs.append(await run_cases(client, args.seconds, args.concurrency))
            fills.append(await run_fill_cases(client, seconds=max(args.seconds, 3.0)))
            for case in runs[-1]:
                report.run(f"run {run + 1}", case)
        await client.aclose()
    rows = []
    for index, first in enumerate(runs[0]):
        cases = [run[index] for run in runs]
        rows.append(
            [
                first.name,
                f"{median([c.cache.ops_per_s for c in cases]):,.0f}",
                f"{median([c.cache.p50_ms for c in cases]):.3f}",
                f"{median([c.cache.p99_ms for c in cases]):.3f}",
                f"{median([c.raw.ops_per_s for c in cases]):,.0f}",
                f"{median([c.raw.p50_ms for c in cases]):.3f}",
                f"{median([c.raw.p99_ms for c in cases]):.3f}",
                f"{median([c.ratio for c in cases]):.2f}",
            ]
        )
    report.table(
        "",
        ["case", "cache ops/s", "p50 ms", "p99 ms", "raw ops/s", "raw p50", "raw p99", "ratio"],
        rows,
    )
    fill_rows = []
    for index, fill in enumerate(fills[0]):
        per_run = [run[index] for run in fills]
        fill_rows.append(
            [
                fill.name,
                f"{median([float(r.reads) for r in per_run]):,.0f}",
                f"{median([r.hit_rate for r in per_run]):.1%}",
                "yes" if all(r.consistent for r in per_run) else "NO",
            ]
        )
    report.table(
        "cache-aside under writes: the list written every 100 ms, 8 readers "
        "(get -> miss -> fill version -> 2 ms store read -> fill); medians over runs",
        ["list", "reads", "hit rate", "cached list matches the store"],
        fill_rows,
    )
    report.write()


def _load_generator_setup() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, [1])  # the gateways have CPU 0 to themselves


async def _repeat(
    report: Report, runs: int, one: Callable[[], Awaitable[_R]], label: str = ""
) -> list[_R]:
    """`runs` runs of a benchmark, each kept in the report as it ends."""
    _load_generator_setup()
    results = []
    for run in range(runs):
        results.append(await one())
        report.run(f"{label}run {run + 1}", results[-1])
    return results


async def _grouped(
    report: Report, runs: int, steps: dict[str, Callable[[], Awaitable[_R]]], rows: list[Row]
) -> dict[str, list[_R]]:
    """`runs` runs of each step, then the table of their medians, a column per step."""
    groups = {label: await _repeat(report, runs, one, f"{label}, ") for label, one in steps.items()}
    report.figures(groups, rows)
    return groups


async def _measured(
    report: Report, runs: int, one: Callable[[], Awaitable[_R]], rows: list[Row]
) -> list[_R]:
    """`runs` runs, then the table of their medians."""
    return (await _grouped(report, runs, {"median": one}, rows))["median"]


_REDIS_KINDS = {
    "single": "one Valkey",
    "cluster": "a Valkey Cluster of 3 primaries + 3 replicas (sharded pub/sub)",
}
_SERVERS = {
    "gateway": "instances",
    "floor": "floor relays (loadtest/floor_relay.py: no auth, state or validation)",
}


async def publish_main(args: argparse.Namespace) -> None:
    report = Report(
        "publish",
        f"publish benchmark: {machine()}; {args.seconds}s per run, medians of {args.runs}; "
        "3,000 conversation channels, 2 subscriber connections per node (two gateway "
        "instances), 4 publisher connections per node sending pipelined batches of 200 "
        "150-byte events (closed loop); the load generator on CPU 1, the servers unpinned; "
        "servers without replicas",
    )
    await _grouped(
        report,
        args.runs,
        {
            label: functools.partial(run_publish, kind, args.seconds)
            for kind, label in DEPLOYMENTS.items()
            if kind in args.deployments
        },
        [
            ("events published/s", "published_per_s", "{:,.0f}"),
            ("deliveries/s (subscribers)", "delivered_per_s", "{:,.0f}"),
            ("server CPU % (all nodes)", "server_cpu_pct", "{:.0f}"),
            ("busiest node CPU %", "busiest_server_cpu_pct", "{:.0f}"),
            ("server CPU us per event", "server_cpu_us_per_event", "{:.2f}"),
            ("events/s at a full core on the busiest node", "capacity_per_s", "{:,.0f}"),
        ],
    )
    report.write()


async def fanout_main(args: argparse.Namespace) -> None:
    name = "fanout" if args.redis == "single" else f"fanout-{args.redis}"
    report = Report(
        name if args.server == "gateway" else f"{name}-floor",
        f"fanout benchmark: {machine()}; {args.clients} clients in rooms of 10 over 2 "
        f"{_SERVERS[args.server]} on {_REDIS_KINDS[args.redis]} "
        f"(gateways on CPU 0, load + Valkey on CPU 1); typing.start/stop alternating "
        f"from senders in shuffled order, {args.seconds}s window per offered rate; "
        f"medians of {args.runs} runs",
    )
    by_rate: dict[str, list[FanoutResult]] = await _grouped(
        report,
        args.runs,
        {
            f"{rate:,.0f} events/s offered": functools.partial(
                run_fanout,
                args.clients,
                rate,
                args.seconds,
                redis=args.redis,
                program=FLOOR if args.server == "floor" else GATEWAY,
            )
            for rate in args.rate
        },
        [
            ("delivered events/s", "delivered_per_s", "{:,.0f}"),
            ("delivered / expected", "ratio", "{:.4f}"),
            ("latency p50 ms", "p50_ms", "{:.2f}"),
            ("latency p99 ms", "p99_ms", "{:.2f}"),
            ("latency max ms", "max_ms", "{:.2f}"),
            ("server CPU % (both instances)", "server_cpu_pct", "{:.1f}"),
            ("server CPU us per delivery", "cpu_us_per_delivery", "{:.1f}"),
            ("Valkey CPU us per delivery", "redis_cpu_us_per_delivery", "{:.2f}"),
            ("RSS KiB per connection", "rss_kib_per_conn", "{:.1f}"),
        ],
    )
    rates = [float(r) for r in args.rate]
    groups = list(by_rate.values())
    report.plot_medians(
        "latency",
        "typing fan-out: latency against offered load",
        ("offered typing events/s", "ms (median of runs)"),
        rates,
        groups,
        [("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms")],
    )
    report.plot_medians(
        "throughput",
        "typing fan-out: deliveries against offered load",
        ("offered typing events/s", "delivered events/s"),
        rates,
        groups,
        [("delivered", "delivered_per_s")],
    )
    report.write()


async def messages_main(args: argparse.Namespace) -> None:
    report = Report(
        "messages",
        f"messages benchmark: {machine()}; {args.clients} clients over 2 instances on one "
        f"{'SQLite file' if args.store == 'sqlite' else 'PostgreSQL database'} (the gateways "
        f"share one core); latencies at {args.rate:,.0f} message.send/s "
        f"offered, capacity at {args.capacity_rate:,.0f}/s offered, {args.seconds}s windows; "
        f"medians of {args.runs} runs",
    )
    with contextlib.ExitStack() as stack:
        by_room = await _messages_by_room(report, args, _store_for(args.store, stack))
    every_run = [result for results in by_room.values() for result in results]
    report.note(
        f"read back from the store after every run: {sum(r.seq_gaps for r in every_run)} seq "
        f"gaps and {sum(r.acked_not_stored for r in every_run)} acknowledged messages missing "
        f"over all {len(every_run)} runs (each conversation's seqs must run 1..n)"
    )
    report.plot_medians(
        "latency",
        f"message latency at {args.rate:,.0f} sends/s against room size",
        ("members per conversation", "ms (median of runs)"),
        [float(r) for r in args.rooms],
        list(by_room.values()),
        [
            ("send->ack p50", "ack_p50_ms"),
            ("send->ack p99", "ack_p99_ms"),
            ("send->delivered p50", "delivered_p50_ms"),
            ("send->delivered p99", "delivered_p99_ms"),
        ],
    )
    report.write()


def _store_for(store: str, stack: contextlib.ExitStack) -> Callable[[], str]:
    """Each run's store URL: "" (a SQLite file of the run's own), a fresh database on a
    PostgreSQL server this process starts ("postgresql", durable as in production), or on the
    server a URL names."""
    if store == "sqlite":
        return lambda: ""
    server = (
        stack.enter_context(private_postgres(durable=True)).url if store == "postgresql" else store
    )
    return lambda: fresh_database(server)


async def _messages_by_room(
    report: Report, args: argparse.Namespace, store: Callable[[], str]
) -> dict[str, list[MessagesResult]]:
    return await _grouped(
        report,
        args.runs,
        {
            f"rooms of {room}": functools.partial(
                _run_messages_on,
                store,
                args.clients,
                room,
                args.rate,
                args.seconds,
                args.capacity_rate,
            )
            for room in args.rooms
        },  # fmt: skip
        [
            ("persisted messages/s (capacity)", "persisted_per_s", "{:,.0f}"),
            ("send->ack p50 ms", "ack_p50_ms", "{:.2f}"),
            ("send->ack p99 ms", "ack_p99_ms", "{:.2f}"),
            ("send->delivered p50 ms", "delivered_p50_ms", "{:.2f}"),
            ("send->delivered p99 ms", "delivered_p99_ms", "{:.2f}"),
            ("delivered / expected", "delivered_ratio", "{:.4f}"),
            ("server CPU % (both instances)", "server_cpu_pct", "{:.1f}"),
            ("load generator CPU %", "loadgen_cpu_pct", "{:.1f}"),
            ("history reads/s (newest 20)", "history_reads_per_s", "{:,.0f}"),
            ("history reads from the cache", "history_cache_share", "{:.1%}"),
            ("send->ack into a 1,000-member group, ms", "big_group_ack_ms", "{:.2f}"),
        ],
    )


async def _run_messages_on(
    store: Callable[[], str],
    clients: int,
    room: int,
    rate: float,
    seconds: float,
    capacity_rate: float,
) -> MessagesResult:
    return await run_messages(clients, room, rate, seconds, capacity_rate, store_url=store())


async def abuse_main(args: argparse.Namespace) -> None:
    report = Report(
        "abuse",
        f"abuse benchmark: {machine()}; {args.pairs} direct pairs over 2 instances (one CPU "
        f"each) sending {args.rate:,.0f} messages/s, then the same with one account (5 "
        f"sessions x 10 connections at 19.5 frames/s each) creating groups naming 256 members; "
        f"{args.seconds}s phases; medians of {args.runs} runs",
    )
    await _measured(
        report,
        args.runs,
        lambda: run_abuse(args.pairs, args.rate, args.seconds),
        [
            ("others' send->delivered p50 ms, quiet", "quiet_p50_ms", "{:.2f}"),
            ("others' send->delivered p99 ms, quiet", "quiet_p99_ms", "{:.2f}"),
            ("others' send->delivered p50 ms, attacked", "attacked_p50_ms", "{:.2f}"),
            ("others' send->delivered p99 ms, attacked", "attacked_p99_ms", "{:.2f}"),
            ("others' messages delivered / sent, attacked", "delivered_ratio", "{:.4f}"),
            ("groups the attacker got created", "groups_created", "{:,.0f}"),
            ("creates refused rate_limited", "groups_refused", "{:,.0f}"),
            ("store growth during the attack, MB", "store_growth_mb", "{:.2f}"),
        ],
    )
    report.write()


def _burst_rows(burst: str, label: str) -> list[Row]:
    """The table rows of one heartbeat burst (`HeartbeatResult.first` / `.later`)."""
    return [
        (f"{label}: heartbeat->ack {name} ms", f"{burst}.ack_{name}_ms", "{:.2f}")
        for name in ("p50", "p99")
    ] + [
        (f"{label}: server CPU us per heartbeat", f"{burst}.cpu_us_per_heartbeat", "{:.1f}"),
        ("... of which user", f"{burst}.user_cpu_us_per_heartbeat", "{:.1f}"),
    ]


async def heartbeats_main(args: argparse.Namespace) -> None:
    args.connections = held_by_one_gateway(args.connections)
    report = Report(
        "heartbeats",
        f"heartbeats benchmark: {machine()}; one gateway; {args.connections:,} authenticated "
        f"connections, every one heartbeating within {args.spread}s, twice (right after "
        f"connecting, then a second later); server CPU is user + system; medians of {args.runs} "
        "runs",
    )
    await _measured(
        report,
        args.runs,
        lambda: run_heartbeats(args.connections, args.spread, args.client_processes),
        [
            ("failed heartbeats (both bursts)", "failed", "{:,.0f}"),
            *_burst_rows("first", "first burst"),
            *_burst_rows("later", "a second later"),
            ("RSS KiB per idle authenticated connection", "rss_kib_per_conn", "{:.1f}"),
        ],
    )
    report.write()


async def storm_main(args: argparse.Namespace) -> None:
    if args.clients is None:
        args.clients = 10_000 if args.fresh else 5_000
    if args.fresh:
        report = Report(
            "storm-fresh",
            f"storm benchmark: {machine()}; one fresh gateway (one core); {args.clients:,} "
            f"clients connecting at once with a bearer token; medians of {args.runs} runs",
        )
        await _measured(
            report,
            args.runs,
            lambda: run_storm(args.clients),
            [
                ("connected", "connected", "{:,.0f}"),
                ("failed or timed out", "timed_out", "{:,.0f}"),
                ("got hello (the rest closed, e.g. 1013)", "greeted", "{:,.0f}"),
                ("connect p50 ms", "connect_p50_ms", "{:.1f}"),
                ("connect p99 ms", "connect_p99_ms", "{:.1f}"),
                ("authenticated connections/s", "connections_per_s", "{:,.0f}"),
                ("server CPU ms per connection", "cpu_ms_per_connection", "{:.3f}"),
            ],
        )
        report.write()
        return
    report = Report(
        "storm",
        f"storm benchmark: {machine()}; {args.clients:,} clients on one instance, which drains "
        f"(SIGTERM, closes spread over {args.drain_timeout}s); each client reconnects at once on "
        f"its `reconnect` frame to one of {args.survivors} surviving instances (a CPU each, shared "
        f"with the load generator and Valkey), watched from them; medians of {args.runs} runs",
    )
    results: list[DrainStormResult] = await _measured(
        report,
        args.runs,
        lambda: run_drain_storm(args.clients, args.survivors, args.drain_timeout),
        [
            ("reconnected", "reconnected", "{:,.0f}"),
            ("failed or timed out", "failed", "{:,.0f}"),
            ("connect p50 ms", "connect_p50_ms", "{:.1f}"),
            ("connect p99 ms", "connect_p99_ms", "{:.1f}"),
            ("authenticated connections/s taken by the survivors", "connections_per_s", "{:,.0f}"),
            ("wave: drain start to last connection, s", "wave_s", "{:.2f}"),
            ("online afterwards (bulk presence)", "online_after", "{:,.0f}"),
            ("offline events seen by watchers", "offline_events", "{:,.0f}"),
        ],
    )
    report.plot(
        "connect-cdf",
        "reconnect after a drain: connect time distribution",
        "connect ms (TCP connect to authenticated 101)",
        "share of clients connected",
        {
            f"run {i + 1}": (ordered, [(k + 1) / len(ordered) for k in range(len(ordered))])
            for i, ordered in enumerate(sorted(r.durations_ms) for r in results)
        },
    )
    report.write()


async def soak_main(args: argparse.Namespace) -> None:
    report = Report(
        "soak",
        f"soak benchmark: {machine()}; {args.clients:,} clients over 2 instances in rooms of 5, "
        f"{args.seconds:.0f}s at {args.rate:.0f} message.send/s (each after a typing.start; reads "
        f"and presence queries beside), a heartbeat per client every {args.heartbeat:.0f}s; "
        f"sampled every {args.sample:.0f}s after a {args.warmup:.0f}s warm-up; drift = last fifth "
        f"of the samples against the first; medians of {args.runs} runs",
    )
    results: list[SoakResult] = await _measured(
        report,
        args.runs,
        functools.partial(
            run_soak,
            args.clients,
            args.seconds,
            args.rate,
            args.sample,
            args.warmup,
            args.heartbeat,
        ),
        [
            ("messages persisted", "messages", "{:,.0f}"),
            ("deliveries expected (every member)", "deliveries_expected", "{:,.0f}"),
            ("lost deliveries", "lost", "{:,.0f}"),
            ("duplicated deliveries", "duplicated", "{:,.0f}"),
            ("error frames", "errors", "{:,.0f}"),
            ("RSS drift % (both gateways)", "rss_drift_pct", "{:+.2f}"),
            ("open files drift %", "fd_drift_pct", "{:+.2f}"),
            ("asyncio tasks drift %", "tasks_drift_pct", "{:+.2f}"),
            ("Valkey used_memory drift %", "redis_drift_pct", "{:+.2f}"),
        ],
    )
    for key, title, unit in (
        ("rss_mib", "gateway RSS (both instances)", "MiB"),
        ("fds", "open file descriptors (both instances)", "descriptors"),
        ("tasks", "asyncio tasks (both instances)", "tasks"),
        ("redis_mib", "Valkey used_memory", "MiB"),
    ):
        report.plot(
            key.split("_")[0],
            f"soak: {title}",
            "seconds since start",
            unit,
            {f"run {i + 1}": (r.samples["t"], r.samples[key]) for i, r in enumerate(results)},
        )
    report.write()


async def idle_main(args: argparse.Namespace) -> None:
    args.connections = sorted({held_by_one_gateway(count) for count in args.connections})
    report = Report(
        "idle", f"idle benchmark: {machine()}; one gateway; medians of {args.runs} runs"
    )
    by_count: dict[str, list[IdleResult]] = await _grouped(
        report,
        args.runs,
        {
            f"{count:,} connections": functools.partial(run_idle, count, args.client_processes)
            for count in args.connections
        },
        [("RSS KiB per idle authenticated connection", "rss_kib_per_conn", "{:.1f}")],
    )
    groups = list(by_count.values())
    counts = [float(c) for c in args.connections]
    per_conn = [median_of(g, "rss_kib_per_conn") for g in groups]
    report.plot(
        "rss",
        "gateway RSS against idle authenticated connections",
        "connections",
        "RSS added, MiB",
        {"RSS added": (counts, [c * k / 1024 for c, k in zip(counts, per_conn, strict=True)])},
    )
    report.write()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    caches = sub.add_parser("caches", help="each cache call beside a raw redis-py pipeline")
    caches.add_argument("--seconds", type=float, default=2.0)
    caches.add_argument("--runs", type=int, default=3)
    caches.add_argument("--concurrency", type=int, default=8)
    publish = sub.add_parser(
        "publish", help="pub/sub capacity of one Valkey against a cluster of 1 and 3 primaries"
    )
    publish.add_argument("--seconds", type=float, default=5.0)
    publish.add_argument("--runs", type=int, default=3)
    publish.add_argument(
        "--deployments", nargs="+", choices=list(DEPLOYMENTS), default=list(DEPLOYMENTS)
    )
    fanout = sub.add_parser("fanout", help="typing fan-out over two gateway instances")
    fanout.add_argument("--clients", type=int, default=1000)
    fanout.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[1000.0, 4000.0, 8000.0, 12000.0],
        help="offered events/s, one step each",
    )
    fanout.add_argument("--seconds", type=float, default=5.0)
    fanout.add_argument(
        "--redis",
        choices=sorted(_REDIS_KINDS),
        default="single",
        help="one embedded Valkey, or a 3 primary + 3 replica Valkey Cluster",
    )
    fanout.add_argument("--runs", type=int, default=3)
    fanout.add_argument(
        "--server",
        choices=sorted(_SERVERS),
        default="gateway",
        help="the gateway, or the floor: a bare relay doing the least a Python process can",
    )
    messages = sub.add_parser("messages", help="message sends, receipts and history")
    messages.add_argument("--clients", type=int, default=200)
    messages.add_argument("--rooms", type=int, nargs="+", default=[2, 10], help="room sizes")
    messages.add_argument(
        "--rate", type=float, default=1000.0, help="offered sends/s for latencies"
    )
    messages.add_argument(
        "--capacity-rate", type=float, default=5000.0, help="offered sends/s for capacity"
    )
    messages.add_argument("--seconds", type=float, default=5.0)
    messages.add_argument("--runs", type=int, default=3)
    messages.add_argument(
        "--store",
        default="sqlite",
        help="sqlite; postgresql (a server this benchmark starts, fsync on); or a "
        "postgresql:// URL of a server to make fresh databases on",
    )
    abuse = sub.add_parser("abuse", help="one hostile account against everyone's latency")
    abuse.add_argument("--pairs", type=int, default=32)
    abuse.add_argument("--rate", type=float, default=100.0, help="others' message.send/s")
    abuse.add_argument("--seconds", type=float, default=10.0)
    abuse.add_argument("--runs", type=int, default=3)
    heartbeats = sub.add_parser("heartbeats", help="a burst of heartbeats from every connection")
    heartbeats.add_argument("--connections", type=int, default=20_000)
    heartbeats.add_argument("--spread", type=float, default=1.0, help="seconds of the burst")
    heartbeats.add_argument("--runs", type=int, default=3)
    heartbeats.add_argument("--client-processes", type=int, default=None, help=_CLIENTS_HELP)
    storm = sub.add_parser("storm", help="clients reconnecting at once after an instance drains")
    storm.add_argument(
        "--clients", type=int, default=None, help="default 5,000; 10,000 with --fresh"
    )
    storm.add_argument("--survivors", type=int, default=2, help="instances taking the wave")
    storm.add_argument("--drain-timeout", type=float, default=2.0, help="the drain's window, s")
    storm.add_argument(
        "--fresh", action="store_true", help="instead: every client connecting to one instance"
    )
    storm.add_argument("--runs", type=int, default=3)
    soak = sub.add_parser("soak", help="two instances under a steady mixed load for a set time")
    soak.add_argument("--clients", type=int, default=1000)
    soak.add_argument("--seconds", type=float, default=600.0)
    soak.add_argument("--rate", type=float, default=50.0, help="message.send/s")
    soak.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    soak.add_argument("--warmup", type=float, default=30.0, help="seconds before sampling")
    soak.add_argument("--heartbeat", type=float, default=10.0, help="heartbeat interval, s")
    soak.add_argument("--runs", type=int, default=3)
    idle = sub.add_parser("idle", help="RSS per idle authenticated connection")
    idle.add_argument(
        "--connections",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1000, 5000, 10000],
    )
    idle.add_argument("--runs", type=int, default=3)
    idle.add_argument("--client-processes", type=int, default=None, help=_CLIENTS_HELP)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.command == "caches":
        asyncio.run(caches_main(args))
    elif args.command == "fanout":
        asyncio.run(fanout_main(args))
    elif args.command == "publish":
        asyncio.run(publish_main(args))
    elif args.command == "messages":
        asyncio.run(messages_main(args))
    elif args.command == "abuse":
        asyncio.run(abuse_main(args))
    elif args.command == "heartbeats":
        asyncio.run(heartbeats_main(args))
    elif args.command == "storm":
        asyncio.run(storm_main(args))
    elif args.command == "soak":
        asyncio.run(soak_main(args))
    elif args.command == "idle":
        asyncio.run(idle_main(args))


if __name__ == "__main__":
    main()

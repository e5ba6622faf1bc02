"""Benchmarks: `python loadtest/bench.py caches | fanout | messages | idle` (see --help).

Every benchmark starts what it needs (an embedded Valkey unless GATEWAY_REDIS_URL is set), runs
bounded in count and time against loopback only, and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from caches.redis import configured_or_embedded, connect
from loadtest.bench_caches import CaseResult, run_cases
from loadtest.bench_fanout import FanoutResult, IdleResult, run_fanout, run_idle
from loadtest.bench_fill import FillResult, run_fill_cases
from loadtest.bench_messages import MessagesResult, run_messages
from loadtest.bench_scale import run_heartbeats, run_storm
from loadtest.stats import median

_R = TypeVar("_R")


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


async def caches_main(args: argparse.Namespace) -> None:
    with configured_or_embedded(os.environ.get("GATEWAY_REDIS_URL")) as url:
        client = connect(url)
        runs: list[list[CaseResult]] = []
        fills: list[list[FillResult]] = []
        for _ in range(args.runs):
            runs.append(await run_cases(client, args.seconds, args.concurrency))
            fills.append(await run_fill_cases(client, seconds=max(args.seconds, 3.0)))
        await client.aclose()
    print(
        f"caches benchmark: {machine()}; {args.runs} runs x {args.seconds}s per case, "
        f"{args.concurrency} concurrent callers; medians over runs"
    )
    header = (
        f"| {'case':40} | {'cache ops/s':>11} | {'p50 ms':>7} | {'p99 ms':>7} "
        f"| {'raw ops/s':>10} | {'raw p50':>7} | {'raw p99':>7} | {'ratio':>5} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(col)) for col in header.split("|")[1:-1]) + "|")
    for index, first in enumerate(runs[0]):
        cases = [run[index] for run in runs]
        print(
            f"| {first.name:40} "
            f"| {median([c.cache.ops_per_s for c in cases]):11,.0f} "
            f"| {median([c.cache.p50_ms for c in cases]):7.3f} "
            f"| {median([c.cache.p99_ms for c in cases]):7.3f} "
            f"| {median([c.raw.ops_per_s for c in cases]):10,.0f} "
            f"| {median([c.raw.p50_ms for c in cases]):7.3f} "
            f"| {median([c.raw.p99_ms for c in cases]):7.3f} "
            f"| {median([c.ratio for c in cases]):5.2f} |"
        )
    print(
        "\ncache-aside under writes: the list written every 100 ms, 8 readers "
        "(get -> miss -> fill version -> 2 ms store read -> fill); medians over runs"
    )
    print("| list | reads | hit rate | cached list matches the store |\n|---|---|---|---|")
    for index, fill in enumerate(fills[0]):
        per_run = [run[index] for run in fills]
        print(
            f"| {fill.name} | {median([float(r.reads) for r in per_run]):,.0f} "
            f"| {median([r.hit_rate for r in per_run]):.1%} "
            f"| {'yes' if all(r.consistent for r in per_run) else 'NO'} |"
        )


def _load_generator_setup() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, [1])  # the gateways have CPU 0 to themselves


async def fanout_main(args: argparse.Namespace) -> None:
    _load_generator_setup()
    results: list[FanoutResult] = []
    for run in range(args.runs):
        result = await run_fanout(args.clients, args.rate, args.seconds)
        results.append(result)
        print(f"  run {run + 1}: {result}", flush=True)
    print(
        f"fanout benchmark: {machine()}; {args.clients} clients in rooms of 10 over 2 "
        f"instances (gateways on CPU 0, load + Valkey on CPU 1); typing.start/stop "
        f"alternating at {args.rate:.0f} events/s from senders in shuffled order, "
        f"{args.seconds}s window; "
        f"medians of {args.runs} runs"
    )
    rows = [
        ("delivered events/s", "delivered_per_s", "{:,.0f}"),
        ("delivered / expected", "ratio", "{:.4f}"),
        ("latency p50 ms", "p50_ms", "{:.2f}"),
        ("latency p99 ms", "p99_ms", "{:.2f}"),
        ("latency max ms", "max_ms", "{:.2f}"),
        ("server CPU % (both instances)", "server_cpu_pct", "{:.1f}"),
        ("server CPU us per delivery", "cpu_us_per_delivery", "{:.1f}"),
        ("RSS KiB per connection", "rss_kib_per_conn", "{:.1f}"),
    ]
    print("| figure | median |\n|---|---|")
    for label, attr, fmt in rows:
        print(f"| {label} | {fmt.format(median([getattr(r, attr) for r in results]))} |")


async def messages_main(args: argparse.Namespace) -> None:
    _load_generator_setup()
    by_room: dict[int, list[MessagesResult]] = {}
    for room in args.rooms:
        for run in range(args.runs):
            result = await run_messages(
                args.clients, room, args.rate, args.seconds, args.capacity_rate
            )
            by_room.setdefault(room, []).append(result)
            print(f"  rooms of {room}, run {run + 1}: {result}", flush=True)
    print(
        f"messages benchmark: {machine()}; {args.clients} clients over 2 instances on one SQLite "
        f"file (the gateways share one core); latencies at {args.rate:,.0f} message.send/s "
        f"offered, capacity at {args.capacity_rate:,.0f}/s offered, {args.seconds}s windows; "
        f"medians of {args.runs} runs"
    )
    rows = [
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
    ]
    rooms = list(by_room)
    print("| figure | " + " | ".join(f"rooms of {r}" for r in rooms) + " |")
    print("|---|" + "---|" * len(rooms))
    for label, attr, fmt in rows:
        cells = [fmt.format(median([getattr(r, attr) for r in by_room[room]])) for room in rooms]
        print(f"| {label} | " + " | ".join(cells) + " |")


async def _repeat(runs: int, one: Callable[[], Awaitable[_R]]) -> list[_R]:
    """`runs` runs of a benchmark, each printed as it ends."""
    _load_generator_setup()
    results = []
    for run in range(runs):
        results.append(await one())
        print(f"  run {run + 1}: {results[-1]}", flush=True)
    return results


async def heartbeats_main(args: argparse.Namespace) -> None:
    results = await _repeat(args.runs, lambda: run_heartbeats(args.connections, args.spread))
    print(
        f"heartbeats benchmark: {machine()}; one gateway; {args.connections:,} authenticated "
        f"connections, every one heartbeating within {args.spread}s; medians of {args.runs} runs"
    )
    _table(
        results,
        [
            ("failed heartbeats", "failed", "{:,.0f}"),
            ("heartbeat->ack p50 ms", "ack_p50_ms", "{:.2f}"),
            ("heartbeat->ack p99 ms", "ack_p99_ms", "{:.2f}"),
            ("server CPU us per heartbeat", "cpu_us_per_heartbeat", "{:.1f}"),
            ("RSS KiB per idle authenticated connection", "rss_kib_per_conn", "{:.1f}"),
        ],
    )


async def storm_main(args: argparse.Namespace) -> None:
    results = await _repeat(args.runs, lambda: run_storm(args.clients))
    print(
        f"storm benchmark: {machine()}; one gateway (one core); {args.clients:,} clients "
        f"connecting at once with a bearer token; medians of {args.runs} runs"
    )
    _table(
        results,
        [
            ("connected", "connected", "{:,.0f}"),
            ("failed or timed out", "timed_out", "{:,.0f}"),
            ("connect p50 ms", "connect_p50_ms", "{:.1f}"),
            ("connect p99 ms", "connect_p99_ms", "{:.1f}"),
            ("authenticated connections/s", "connections_per_s", "{:,.0f}"),
            ("server CPU ms per connection", "cpu_ms_per_connection", "{:.3f}"),
        ],
    )


def _table(results: Sequence[object], rows: list[tuple[str, str, str]]) -> None:
    print("| figure | median |\n|---|---|")
    for label, attr, fmt in rows:
        print(f"| {label} | {fmt.format(median([getattr(r, attr) for r in results]))} |")


async def idle_main(args: argparse.Namespace) -> None:
    _load_generator_setup()
    print(f"idle benchmark: {machine()}; one gateway; medians of {args.runs} runs")
    print("| connections | RSS KiB per idle authenticated connection |\n|---|---|")
    for count in args.connections:
        results: list[IdleResult] = [await run_idle(count) for _ in range(args.runs)]
        print(f"| {count:,} | {median([r.rss_kib_per_conn for r in results]):.1f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    caches = sub.add_parser("caches", help="each cache call beside a raw redis-py pipeline")
    caches.add_argument("--seconds", type=float, default=2.0)
    caches.add_argument("--runs", type=int, default=3)
    caches.add_argument("--concurrency", type=int, default=8)
    fanout = sub.add_parser("fanout", help="typing fan-out over two gateway instances")
    fanout.add_argument("--clients", type=int, default=1000)
    fanout.add_argument("--rate", type=float, default=2000.0, help="offered events/s")
    fanout.add_argument("--seconds", type=float, default=5.0)
    fanout.add_argument("--runs", type=int, default=3)
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
    heartbeats = sub.add_parser("heartbeats", help="a burst of heartbeats from every connection")
    heartbeats.add_argument("--connections", type=int, default=20_000)
    heartbeats.add_argument("--spread", type=float, default=1.0, help="seconds of the burst")
    heartbeats.add_argument("--runs", type=int, default=3)
    storm = sub.add_parser("storm", help="every client connecting at once")
    storm.add_argument("--clients", type=int, default=10_000)
    storm.add_argument("--runs", type=int, default=3)
    idle = sub.add_parser("idle", help="RSS per idle authenticated connection")
    idle.add_argument(
        "--connections", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 5000]
    )
    idle.add_argument("--runs", type=int, default=3)
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
    elif args.command == "messages":
        asyncio.run(messages_main(args))
    elif args.command == "heartbeats":
        asyncio.run(heartbeats_main(args))
    elif args.command == "storm":
        asyncio.run(storm_main(args))
    elif args.command == "idle":
        asyncio.run(idle_main(args))


if __name__ == "__main__":
    main()

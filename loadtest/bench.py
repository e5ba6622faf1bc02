"""Benchmarks: `python loadtest/bench.py caches` (more subcommands: see --help).

Every benchmark starts what it needs (an embedded Valkey unless GATEWAY_REDIS_URL is set), runs
bounded in count and time against loopback only, and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from caches.redis import EmbeddedRedis, connect
from loadtest.bench_caches import CaseResult, run_cases
from loadtest.stats import median


@contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("GATEWAY_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


async def caches_main(args: argparse.Namespace) -> None:
    with redis_url() as url:
        client = connect(url)
        runs: list[list[CaseResult]] = []
        for _ in range(args.runs):
            runs.append(await run_cases(client, args.seconds, args.concurrency))
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    caches = sub.add_parser("caches", help="each cache call beside a raw redis-py pipeline")
    caches.add_argument("--seconds", type=float, default=2.0)
    caches.add_argument("--runs", type=int, default=3)
    caches.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.command == "caches":
        asyncio.run(caches_main(args))


if __name__ == "__main__":
    main()

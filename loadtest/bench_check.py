"""`make bench-check`: the fan-out and heartbeat benchmarks, small, against the last committed
figures (loadtest/results/bench-check.md). Fails when a figure is worse than its baseline by
more than the noise measured on this kind of machine; `--update` writes the new baseline.

Only CPU per event is compared: on a shared 2-core machine latencies swing by 2x between
minutes, CPU per delivery by 3-5 % within a sitting. Medians of `--runs` fresh runs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.bench_fanout import FanoutResult, run_fanout
from loadtest.bench_scale import HeartbeatResult, run_heartbeats
from loadtest.report import RESULTS, Report, machine
from loadtest.stats import median

BASELINE = RESULTS / "bench-check.md"
FANOUT_RATE = 2000.0
"""Events/s offered: the peers harness's operating point (18,000 deliveries/s)."""
HEARTBEAT_CONNECTIONS = 3000


@dataclass(frozen=True)
class Figure:
    name: str
    read: Callable[[list[FanoutResult], list[HeartbeatResult]], float]
    allowed: float
    """How much worse than the baseline still passes (a fraction). Within one sitting the
    three runs' medians vary by 3-5 %; between sittings (days) this machine drifts by 15-30 %,
    so a failure on a slow day is confirmed by running the baseline's commit in the same
    sitting before it is believed."""
    fmt: str = "{:.1f}"


FIGURES = [
    Figure(
        "fan-out: server CPU us per delivery at 2,000 events/s",
        lambda f, _: median([r.cpu_us_per_delivery for r in f]),
        0.30,
    ),
    Figure(
        "fan-out: Valkey CPU us per delivery at 2,000 events/s",
        lambda f, _: median([r.redis_cpu_us_per_delivery for r in f]),
        0.30,
        "{:.2f}",
    ),
    Figure(
        "heartbeats: server CPU us per heartbeat (steady state)",
        lambda _, h: median([r.later.cpu_us_per_heartbeat for r in h]),
        0.30,
    ),
]


async def measure(runs: int) -> tuple[list[FanoutResult], list[HeartbeatResult]]:
    fanout = [await run_fanout(1000, FANOUT_RATE, 3.0) for _ in range(runs)]
    heartbeats = [await run_heartbeats(HEARTBEAT_CONNECTIONS) for _ in range(runs)]
    return fanout, heartbeats


def read_baseline(path: Path = BASELINE) -> dict[str, float]:
    """figure -> baseline value, from the committed report's table."""
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"[\d.,]+", cells[1]):
            found[cells[0]] = float(cells[1].replace(",", ""))
    return found


def compare(measured: dict[str, float], baseline: dict[str, float]) -> list[str]:
    """The regressions beyond each figure's allowance (lower is better for all of them)."""
    worse = []
    for figure in FIGURES:
        before = baseline.get(figure.name)
        now = measured[figure.name]
        if before is not None and now > before * (1 + figure.allowed):
            worse.append(
                f"{figure.name}: {now:.2f} against {before:.2f} "
                f"(+{(now / before - 1) * 100:.0f} %, allowed +{figure.allowed * 100:.0f} %)"
            )
    return worse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--update", action="store_true", help="write the new baseline")
    args = parser.parse_args(argv)
    fanout, heartbeats = asyncio.run(measure(args.runs))
    measured = {f.name: f.read(fanout, heartbeats) for f in FIGURES}
    baseline = read_baseline()
    for figure in FIGURES:
        before = baseline.get(figure.name)
        shown = "none" if before is None else figure.fmt.format(before)
        print(f"{figure.name}: {figure.fmt.format(measured[figure.name])} (baseline {shown})")
    worse = compare(measured, baseline)
    if args.update:
        report = Report(
            "bench-check",
            f"bench-check baseline: {machine()}; fan-out of 1,000 clients in rooms of 10 over 2 "
            f"instances at {FANOUT_RATE:,.0f} events/s for 3 s, and {HEARTBEAT_CONNECTIONS:,} "
            f"connections heartbeating; medians of {args.runs} runs",
        )
        report.table(
            "baseline",
            ["figure", "median", "regression allowed"],
            [
                [f.name, f.fmt.format(measured[f.name]), f"+{f.allowed * 100:.0f} %"]
                for f in FIGURES
            ],
        )
        for result in [*fanout, *heartbeats]:
            report.run(type(result).__name__, result)
        report.write()
        return 0
    for line in worse:
        print(f"REGRESSION {line}")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())

"""Latency and throughput summaries shared by the benchmarks."""

from __future__ import annotations

import operator
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Summary", "median", "median_of", "percentile", "summarize"]


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarize(latencies_s: list[float], elapsed_s: float) -> Summary:
    ordered = sorted(latencies_s)
    return Summary(
        count=len(ordered),
        ops_per_s=len(ordered) / elapsed_s if elapsed_s else 0.0,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] * 1000) if ordered else 0.0,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def median_of(results: Sequence[Any], attr: str) -> float:
    """The median of one figure (a result attribute, dotted for a nested one) over runs."""
    figure = operator.attrgetter(attr)
    return median([figure(r) for r in results])

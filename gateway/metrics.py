"""The Prometheus text exposition of the instance's gauges and counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

__all__ = ["render"]


def render(gauges: Mapping[str, int], totals: Mapping[str, int], counters: Counter[str]) -> bytes:
    """`gauges` as gauges, `totals` and `counters` as `_total` counters, all `gateway_`."""
    lines = []
    for name, value in gauges.items():
        lines += [f"# TYPE gateway_{name} gauge", f"gateway_{name} {value}"]
    for name, value in [*totals.items(), *sorted(counters.items())]:
        lines += [f"# TYPE gateway_{name}_total counter", f"gateway_{name}_total {value}"]
    return ("\n".join(lines) + "\n").encode()

"""Metrics: plain integers on the hot path, turned into Prometheus families at scrape time.

Counting a frame or a delivery must cost no lock, so the code counts into a `Counter[str]` and
into `Latency` buckets; a `prometheus_client` collector reads them when `/metrics` is scraped.
A counter key is a family name, then its label values after `|` (`"frames_in|heartbeat"`); the
families and their labels are declared here, so labels stay bounded (frame types, codes, cache
names: never a user, conversation or connection id).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.protocol import Close, ErrorCode, frames

__all__ = [
    "CONTENT_TYPE",
    "ERRORS",
    "FAMILIES",
    "FRAMES_IN",
    "FRAMES_OUT",
    "INVALID_FRAME",
    "Keys",
    "Latency",
    "MetricsExport",
    "every_series",
    "key",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "frames_in": ("Client frames received, by type (invalid: did not decode)", ("type",)),
    "frames_out": ("Frames written to clients, by type", ("type",)),
    "errors": ("Error frames answered, by code", ("code",)),
    "closes": ("Connections the gateway closed, by close code", ("code", "reason")),
    "cache_requests": (
        "Cache reads, by cache, operation and result (hit, miss)",
        ("cache", "op", "result"),
    ),
    "refused": ("Connections refused by a cap, by cap", ("cap",)),
    "presence_transitions": ("Presence changes announced, by new status", ("status",)),
    "messages_persisted": ("Messages committed to the store", ()),
    "rate_limited": ("Frames refused by the per-connection rate limit", ()),
    "auth_failures": ("Connections refused for their token or session", ()),
    "connections_opened": ("Connections authenticated and attached", ()),
    "tokens_expired": ("Connections ended by their token's expiry (4003)", ()),
    "resyncs": ("Times clients were told to resync after a pub/sub gap", ()),
    "bus_reconnects": ("Pub/sub reconnections", ()),
    "deliveries": ("Frames handed to local connections by the fan-out", ()),
    "cache_repairs_refused": ("Cache repair notes refused (backlog full)", ()),
}

_CAPS = (
    "max_connections",
    "max_pending_auth",
    "max_pending_auth_per_ip",
    "max_connections_per_user",
    "max_connections_per_session",
)
_SERVER_FRAMES = (
    "ack", "conversation.added", "error", "heartbeat_ack", "hello", "message.deleted",
    "message.new", "message.read", "message.status", "presence", "reconnect", "resync",
    "session.expired", "session.expiring", "session.revoked", "typing",
)  # fmt: skip
_CACHE_READS = (("messages", "history"), ("unread", "count"), ("conversations", "list"))

_DEFAULT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def key(family: str, *labels: str) -> str:
    """The counter key of a family and its label values."""
    return "|".join((family, *labels))


class Keys(dict[str, str]):
    """A family's counter keys by label value, each joined once (hot paths count per frame;
    the labels are bounded)."""

    def __init__(self, family: str) -> None:
        super().__init__()
        self.family = family

    def __missing__(self, label: str) -> str:
        made = self[label] = key(self.family, label)
        return made


FRAMES_IN = Keys("frames_in")
FRAMES_OUT = Keys("frames_out")
ERRORS = Keys("errors")
INVALID_FRAME = FRAMES_IN["invalid"]
"""A client frame that did not decode (or was binary)."""


def every_series() -> Counter[str]:
    """Every counter series the instance can count, at 0: Prometheus' guidance is to export
    each known series from the start, so a rate or an alert sees the first event rather than
    a series that appears with it."""
    series = [family for family, (_, labels) in FAMILIES.items() if not labels]
    series += [FRAMES_IN[kind] for kind in frames.FRAME_TYPES] + [INVALID_FRAME]
    series += [FRAMES_OUT[kind] for kind in _SERVER_FRAMES]
    series += [ERRORS[code.value] for code in ErrorCode]
    series += [key("closes", str(int(code)), code.name.lower()) for code in Close]
    series += [key("refused", cap) for cap in _CAPS]
    series += [key("presence_transitions", status) for status in ("online", "away", "offline")]
    series += [key("cache_requests", *read, result) for read in _CACHE_READS
               for result in ("hit", "miss")]  # fmt: skip
    return Counter(dict.fromkeys(series, 0))


class Latency:
    """A histogram without locks: `observe` is a bisect and two additions."""

    __slots__ = ("buckets", "counts", "help", "name", "total")

    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = _DEFAULT_BUCKETS):
        self.name = name
        self.help = help
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def family(self) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            cumulative.append((bound, running))
        family = HistogramMetricFamily(f"gateway_{self.name}_seconds", self.help)
        family.add_metric([], cumulative, self.total)
        return family


class MetricsExport(Collector):
    """The instance's metrics as Prometheus families, read at scrape time."""

    def __init__(
        self,
        counters: Counter[str],
        gauges: Callable[[], Mapping[str, tuple[str, float]]],
        totals: Callable[[], Mapping[str, int]],
        latencies: list[Latency],
    ) -> None:
        """`gauges`: name -> (help, value); `totals`: counters kept elsewhere (name -> value)."""
        self._counters = counters
        self._gauges = gauges
        self._totals = totals
        self._latencies = latencies
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        for name, (help_text, value) in self._gauges().items():
            yield GaugeMetricFamily(f"gateway_{name}", help_text, value=value)
        samples: dict[str, list[tuple[list[str], float]]] = {}
        merged = Counter(self._counters)  # a series counted in both places is one sample
        merged.update(self._totals())
        for raw, value in merged.items():
            family, *labels = raw.split("|")
            samples.setdefault(family, []).append((labels, value))
        for family, values in sorted(samples.items()):
            help_text, label_names = FAMILIES.get(family, (family.replace("_", " "), ()))
            metric = CounterMetricFamily(f"gateway_{family}", help_text, labels=label_names)
            for labels, value in values:
                if len(labels) == len(label_names):
                    metric.add_metric(labels, value)
            yield metric
        for latency in self._latencies:
            yield latency.family()

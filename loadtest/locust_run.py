"""`make locust`: the locust user against two local gateways, headless, then a report.

    python loadtest/locust_run.py --users 500 --spawn-rate 100 --seconds 60

Starts an embedded Valkey and two gateways (as `bench.py` does), runs locust headless on
`loadtest/locustfile.py` with users spread over both, and writes locust's CSVs plus the report
(`locust.json`, `locust.md`, `locust-*.png`) under `loadtest/results/`. Exits 1 when locust
recorded any failure (the table lists them).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.bench_fanout import SECRET, cluster
from loadtest.report import RESULTS, Report, machine

__all__ = ["main", "run_locust"]

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def run_locust(
    users: int,
    spawn_rate: float,
    seconds: int,
    results: Path = RESULTS,
    heartbeat_interval: float = 20.0,
) -> tuple[list[dict[str, str]], Path]:
    """Run locust against a fresh pair of gateways; locust's aggregated stats rows and the CSV
    prefix its files were written under."""
    results.mkdir(parents=True, exist_ok=True)
    prefix = results / "locust"
    with cluster(
        2,
        heartbeat_interval=str(heartbeat_interval),
        lease_ttl=str(heartbeat_interval * 3),
        rate_limit="20",
        rate_burst="60",
    ) as (workdir, redis_url, gateways):
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            str(spawn_rate),
            "--run-time",
            f"{seconds}s",
            "--stop-timeout",
            "5",
            "--host",
            ",".join(g.url for g in gateways),
            "--csv",
            str(prefix),
            "--csv-full-history",
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--redis-url",
            redis_url,
            "--jwt-secret",
            SECRET,
            "--population",
            str(max(users, 50)),
        ]
        log = workdir / "locust.log"
        with log.open("wb") as out:
            subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 120, check=False
            )
        (results / "locust.log").write_bytes(log.read_bytes())
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return list(csv.DictReader(handle)), prefix


def _report(rows: list[dict[str, str]], prefix: Path, args: argparse.Namespace) -> int:
    report = Report(
        "locust",
        f"locust: {machine()}; {args.users} users (spawned at {args.spawn_rate}/s) over two "
        f"gateways for {args.seconds}s; request type WS: frame to its ack, DELIVERY: message.send "
        f"to another member's message.new",
    )
    columns = ["Request Count", "Failure Count", "50%", "95%", "99%", "Max Response Time"]
    report.table(
        "",
        ["type", "name", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "max ms", "per s"],
        [
            [row["Type"], row["Name"]]
            + [f"{float(row[c]):,.0f}" if row[c] not in ("N/A", "") else "-" for c in columns]
            + [f"{float(row['Requests/s']):.1f}"]
            for row in rows
        ],
    )
    history = _history(Path(f"{prefix}_stats_history.csv"))
    if history:
        report.plot(
            "latency",
            "locust: response time percentiles over the run (all requests)",
            "seconds since start",
            "ms",
            {p: (history["t"], history[p]) for p in ("50%", "95%", "99%")},
        )
    failures = sum(int(row["Failure Count"]) for row in rows if row["Name"] == "Aggregated")
    report.note(f"failures: {failures}")
    report.write(args.results)
    return 1 if failures else 0


def _history(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Name"] == "Aggregated"]
    if not rows:
        return {}
    first = int(rows[0]["Timestamp"])
    series: dict[str, list[float]] = {"t": [float(int(r["Timestamp"]) - first) for r in rows]}
    for p in ("50%", "95%", "99%"):
        series[p] = [float(r[p]) if r[p] not in ("N/A", "") else 0.0 for r in rows]
    return series


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--spawn-rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--heartbeat-interval", type=float, default=20.0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rows, prefix = run_locust(
        args.users, args.spawn_rate, args.seconds, args.results, args.heartbeat_interval
    )
    sys.exit(_report(rows, prefix, args))


if __name__ == "__main__":
    main()

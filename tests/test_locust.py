"""The locust user, for 6 seconds against two real gateways: every request answered, every
kind of traffic seen (a smoke of `make locust`, asserted from locust's own CSV)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_locust_smoke_has_no_failures(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "loadtest" / "locust_run.py"),
        "--users",
        "30",
        "--spawn-rate",
        "30",
        "--seconds",
        "6",
        "--heartbeat-interval",
        "2",
        "--results",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=140, check=False)
    with (tmp_path / "locust_stats.csv").open(newline="") as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    log = (tmp_path / "locust.log").read_text()
    aggregated = rows[("", "Aggregated")]
    assert aggregated["Failure Count"] == "0", log
    assert done.returncode == 0, done.stdout + done.stderr
    for kind, name in [
        ("WS", "connect"),
        ("WS", "heartbeat"),
        ("WS", "presence.subscribe"),
        ("WS", "typing.start"),
        ("WS", "message.send"),
        ("WS", "message.read"),
        ("DELIVERY", "message.new"),
    ]:
        assert int(rows[(kind, name)]["Request Count"]) > 0, (kind, name, log)
    assert int(rows[("WS", "connect")]["Request Count"]) >= 30
    for report in ("locust.json", "locust.md", "locust-latency.png"):
        assert (tmp_path / report).stat().st_size > 0

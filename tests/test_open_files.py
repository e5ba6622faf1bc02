"""At start the gateway raises its open-files soft limit to the hard limit (a socket is a
descriptor) and says in the log how many connections that leaves room for."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from tests.gateways import SECRET

ROOT = Path(__file__).resolve().parent.parent


def _low_soft_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def test_the_soft_limit_is_raised_and_the_room_logged(redis_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "gw.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", "0", "--redis-url", redis_url,
             "--jwt-secret", SECRET, "--store", str(tmp_path / "s.sqlite3")],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT, preexec_fn=_low_soft_limit,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert b"listening on" in proc.stdout.readline()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft, hard = next(
            line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")
        )
        assert soft == hard
        assert f"open-files limit {soft}" in log_path.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

"""Start `presence-gateway serve` as a child process and wait until it listens: the harness of
the integration tests and the benchmarks (not part of the installed package). The child gets
port 0 unless told otherwise and reports where it listens.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LaunchError", "Launched", "launch"]


class LaunchError(Exception):
    """The gateway exited or stayed silent before listening; carries its log."""


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    url: str
    http: str
    log_path: Path
    settings: dict[str, str] = field(default_factory=dict)
    ready_line: str = ""
    """What the gateway printed when it started listening."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """One sample of its `/metrics` (0 when absent), read from the main port:
        `metric("gateway_refused_total", cap="max_connections")`."""
        if labels:
            name += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0

    def stop(self, sig: int = 15, timeout: float = 10.0) -> int:
        """Signal (SIGTERM by default), wait, SIGKILL after `timeout`; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def _child_setup(cpus: list[int] | None) -> None:
    # The open-files limit the gateway raises itself (gateway.limits), wherever it runs.
    if cpus:
        os.sched_setaffinity(0, cpus)


def launch(
    settings: Mapping[str, str],
    workdir: Path,
    log_path: Path,
    *,
    cpus: list[int] | None = None,
    timeout: float = 15.0,
    program: Sequence[str] = ("-m", "gateway", "serve"),
) -> Launched:
    """Run `python -m gateway serve --<name> <value>...` in `workdir`, logging to `log_path`
    (`program`: what follows `python` to run another server taking the same options, e.g. a
    benchmark's floor)."""
    argv = [sys.executable, *program]
    for name, value in {"port": "0", **settings}.items():
        argv += ["--" + name.replace("_", "-"), value]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=workdir,
            env=dict(os.environ),
            preexec_fn=lambda: _child_setup(cpus),
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    # A selector, not select(): a load generator's descriptors run past select()'s 1024.
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"listening on" not in line:
            ready = selector.select(max(deadline - time.monotonic(), 0))
            if not ready or proc.poll() is not None:
                proc.kill()
                proc.wait()
                proc.stdout.close()
                raise LaunchError(f"gateway did not start:\n{log_path.read_text()[-3000:]}")
            line = proc.stdout.readline()
    url = line.decode().split("listening on ", 1)[1].split()[0]
    http = url.replace("ws://", "http://").removesuffix("/ws")
    return Launched(proc, url, http, log_path, dict(settings), line.decode().strip())

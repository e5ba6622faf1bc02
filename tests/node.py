"""Node and the SDK's npm dependencies for the JavaScript tests: found, or installed from the
repository's lockfile (`npm ci`), or a skip with what to install; under CI=true, a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from caches.redis import find_server_binary

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "clients" / "js"


def require(what: str, hint: str) -> None:
    """Skip a test that lacks `what`, or fail it under CI (where everything must run)."""
    message = f"{what} is missing: {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def node() -> str:
    found = shutil.which("node")
    if found is None:
        require("node", "install Node.js 20+ (Debian: apt-get install nodejs npm)")
        raise AssertionError("unreachable")
    return found


def sdk_dependencies() -> Path:
    """clients/js/node_modules, installed with `npm ci` when absent."""
    modules = SDK / "node_modules"
    if not (modules / "playwright-core").exists():
        npm = shutil.which("npm")
        if npm is None:
            require("npm", "install npm (Debian: apt-get install npm)")
        subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund"],
            cwd=SDK,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return modules


def run_node_tests(files: list[str], **env: str) -> None:
    """`node --test` on `files` (relative to clients/js), with the gateway's Python and the
    Valkey binary; fails the calling test with node's report when any of them fails."""
    result = subprocess.run(
        [node(), "--experimental-websocket", "--test", "--test-reporter", "spec", *files],
        cwd=SDK,
        env={
            **os.environ,
            "GATEWAY_PYTHON": sys.executable,
            "VALKEY_SERVER": find_server_binary(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]

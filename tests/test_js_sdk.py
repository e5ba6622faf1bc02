"""The JavaScript SDK's own tests (clients/js/test, node's test runner) against real gateway
processes and a real Valkey they start themselves."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from caches.redis import find_server_binary
from tests.node import SDK, node


@pytest.mark.timeout(240)
def test_the_sdk_against_real_gateways() -> None:
    env = {
        **os.environ,
        "GATEWAY_PYTHON": sys.executable,
        "VALKEY_SERVER": str(find_server_binary()),
    }
    result = subprocess.run(
        [
            node(),
            "--experimental-websocket",
            "--test",
            "--test-reporter",
            "spec",
            *sorted(str(p.relative_to(SDK)) for p in SDK.glob("test/*.test.mjs")),
        ],
        cwd=SDK,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]

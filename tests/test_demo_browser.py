"""The demo page in a real headless Chromium (Debian's package), driven by playwright-core:
two users on two gateway instances, one drained mid-conversation (clients/js/test/
demo.browser.mjs). Screenshots are kept in test-results/browser/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from caches.redis import find_server_binary
from tests.node import ROOT, SDK, node, require, sdk_dependencies

ARTIFACTS = ROOT / "test-results" / "browser"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    require("chromium", "apt-get install chromium (.ci/run installs it)")
    raise AssertionError("unreachable")


@pytest.mark.timeout(240)
def test_the_demo_page_in_a_real_browser() -> None:
    browser = chromium()
    sdk_dependencies()
    env = {
        **os.environ,
        "GATEWAY_PYTHON": sys.executable,
        "VALKEY_SERVER": str(find_server_binary()),
        "CHROMIUM": browser,
        "ARTIFACTS_DIR": str(ARTIFACTS),
    }
    result = subprocess.run(
        [
            node(),
            "--experimental-websocket",
            "--test",
            "--test-reporter",
            "spec",
            "test/demo.browser.mjs",
        ],
        cwd=SDK,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert len(list(ARTIFACTS.glob("*.png"))) >= 5

"""The demo page in a real headless Chromium (Debian's package), driven by playwright-core:
two users on two gateway instances, one drained mid-conversation (clients/js/test/
demo.browser.mjs). Screenshots are kept in test-results/browser/."""

from __future__ import annotations

import shutil

import pytest

from tests.node import ROOT, require, run_node_tests, sdk_dependencies

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
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's screenshots count
    run_node_tests(["test/demo.browser.mjs"], CHROMIUM=browser, ARTIFACTS_DIR=str(ARTIFACTS))
    assert len(list(ARTIFACTS.glob("*.png"))) >= 5

"""The JavaScript SDK's own tests (clients/js/test, node's test runner) against real gateway
processes and a real Valkey they start themselves."""

from __future__ import annotations

import pytest

from tests.node import SDK, run_node_tests


@pytest.mark.timeout(240)
def test_the_sdk_against_real_gateways() -> None:
    run_node_tests(sorted(str(p.relative_to(SDK)) for p in SDK.glob("test/*.test.mjs")))

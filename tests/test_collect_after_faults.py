"""A fault's garbage in reference cycles is collected once the fault is over, not left to a
full collection the gateway's thresholds make rare."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref

from gateway.limits import CollectAfterFaults
from tests.conftest import until


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_a_cycle_left_by_a_fault_is_collected_once_it_is_over() -> None:
    collector = CollectAfterFaults(delay=0.05)
    runner = asyncio.create_task(collector.run())
    gc.disable()  # only the collector may collect here
    try:
        left = weakref.ref(_Cycle())
        await asyncio.sleep(0.2)
        assert left() is not None  # nothing collects it on its own...
        collector.fault_over()
        collector.fault_over()  # (a flapping fault: one collection)
        await until(lambda: left() is None, timeout=2.0)  # ...until the fault is over
        assert collector.collections == 1
    finally:
        gc.enable()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

"""The fan-out benchmark's floor (`bench.py fanout --server floor`) is only a yardstick if it
does the same job: every event reaches every other member of its room, across both relays."""

from __future__ import annotations

from loadtest.bench_fanout import FLOOR, ROOM, run_fanout


async def test_the_floor_delivers_every_event_to_the_rest_of_its_room() -> None:
    result = await run_fanout(4 * ROOM, 200.0, 1.0, warmup=0.5, program=FLOOR)
    assert result.delivered_per_s > 0
    assert result.ratio == 1.0

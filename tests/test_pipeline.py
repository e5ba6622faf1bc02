"""A connection's requests in flight together: answered in request order, at most `depth` at
once, drained before anything else, and cancelled when the connection's task is."""

from __future__ import annotations

import asyncio

from gateway.handlers import Outcome
from gateway.realtime.pipeline import Extra, Pipeline


async def _finish(gate: asyncio.Event, name: str) -> Outcome:
    await gate.wait()
    return Outcome(name.encode())


async def test_answers_leave_in_request_order_whatever_order_requests_finish_in() -> None:
    answered: list[bytes | None] = []
    pipeline = Pipeline(lambda outcome: answered.append(outcome.reply), Extra(), depth=3)
    gates = [asyncio.Event() for _ in range(3)]
    for n, gate in enumerate(gates):
        pipeline.start(_finish(gate, f"r{n}"))
    assert pipeline.full
    gates[2].set()
    gates[1].set()
    await asyncio.sleep(0)  # the finished ones run: still nothing may be answered
    await asyncio.sleep(0)
    assert answered == []
    gates[0].set()
    await pipeline.wait_for_room()
    assert answered == [b"r0", b"r1", b"r2"]
    assert not pipeline.full


async def test_drain_waits_for_every_request_started() -> None:
    answered: list[bytes | None] = []
    pipeline = Pipeline(lambda outcome: answered.append(outcome.reply), Extra())
    gates = [asyncio.Event() for _ in range(4)]
    for n, gate in enumerate(gates):
        pipeline.start(_finish(gate, f"r{n}"))
    for gate in reversed(gates):
        asyncio.get_running_loop().call_soon(gate.set)
    await pipeline.drain()
    assert answered == [b"r0", b"r1", b"r2", b"r3"]


async def test_settle_cancelled_cancels_what_is_in_flight() -> None:
    pipeline = Pipeline(lambda outcome: None, Extra())
    never = asyncio.Event()
    before = asyncio.all_tasks()
    pipeline.start(_finish(never, "stuck"))
    (stuck,) = asyncio.all_tasks() - before
    settling = asyncio.create_task(pipeline.settle())
    await asyncio.sleep(0)
    settling.cancel()
    await asyncio.wait([settling])
    assert settling.cancelled()
    await asyncio.wait([stuck])
    assert stuck.cancelled()


async def test_an_instance_runs_a_bounded_number_beyond_one_per_connection() -> None:
    extra = Extra(limit=2)
    first, second = (Pipeline(lambda outcome: None, extra) for _ in range(2))
    gates = [asyncio.Event() for _ in range(4)]
    for n in range(3):
        first.start(_finish(gates[n], f"a{n}"))
    assert extra.used == 2 and first.full  # two beyond its first: the instance's all
    second.start(_finish(gates[3], "b0"))  # a connection's first always starts
    assert second.full  # one in flight, and no extra left for a second
    assert extra.used == 2
    gates[0].set()
    await first.wait_for_room()
    assert extra.used == 1 and not first.full
    for gate in gates:
        gate.set()
    await first.drain()
    await second.drain()
    assert extra.used == 0

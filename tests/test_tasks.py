"""The structured-concurrency helpers: siblings end together, errors arrive unwrapped, a job
outside the serving group is dropped rather than left running unowned."""

from __future__ import annotations

import asyncio
import inspect

import anyio
import pytest

from gateway.tasks import Spawner, first_to_end


async def test_the_first_to_end_cancels_the_others() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def quick() -> None:
        await asyncio.sleep(0)

    await asyncio.wait_for(first_to_end(forever(), quick()), 2)
    assert cancelled.is_set()


async def test_an_error_arrives_as_itself_not_as_a_group() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def broken() -> None:
        raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        await asyncio.wait_for(first_to_end(forever(), broken()), 2)


async def test_a_swallowed_cancellation_is_delivered_again() -> None:
    """A child that swallows one cancellation (as 3.11's wait_for may) still ends."""
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed += 1
        await asyncio.Event().wait()  # cancelled again here

    async def quick() -> None:
        await asyncio.sleep(0)

    await asyncio.wait_for(first_to_end(stubborn(), quick()), 2)
    assert swallowed == 1


async def test_the_callers_cancellation_propagates() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(first_to_end(forever(), forever()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_spawned_job_runs_in_the_group_and_a_failure_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spawner, ran = Spawner(), asyncio.Event()

    async def job() -> None:
        ran.set()

    async def broken() -> None:
        raise RuntimeError("bug")

    async with anyio.create_task_group() as group:
        spawner.group = group
        spawner.spawn(broken())
        spawner.spawn(job())
    spawner.group = None
    assert ran.is_set()
    assert "a background job failed" in caplog.text


async def test_outside_the_group_a_job_is_closed_not_run() -> None:
    ran = False

    async def job() -> None:
        nonlocal ran
        ran = True

    coro = job()
    Spawner().spawn(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert not ran

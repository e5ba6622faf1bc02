"""Composed scripts against a real server: each part on its own keys and arguments, as alone."""

from __future__ import annotations

import pytest

from caches._base import Composed, Script
from caches.redis import RedisClient

_SET_UNLESS_SKIPPED = Script(
    "set_unless_skipped",
    "if ARGV[1] == 'skip' then\n  return 0\nend\nredis.call('SET', KEYS[1], ARGV[2])\nreturn 1",
)
_PUSH_ALL = Script("push_all", "redis.call('RPUSH', KEYS[1], unpack(ARGV))\nreturn #ARGV")


async def test_each_part_runs_on_its_slice_and_an_early_return_ends_only_its_part(
    redis: RedisClient,
) -> None:
    composed = Composed(_SET_UNLESS_SKIPPED, _PUSH_ALL, _SET_UNLESS_SKIPPED)
    await composed(
        redis,
        [
            (["first"], ["skip", "never"]),
            (["list"], ["a", "b", "c"]),
            (["third"], ["go", "set"]),
        ],
    )
    assert await redis.get("first") is None
    assert await redis.lrange("list", 0, -1) == ["a", "b", "c"]
    assert await redis.get("third") == "set"


async def test_a_server_that_forgot_its_scripts_runs_it_anyway(redis: RedisClient) -> None:
    composed = Composed(_PUSH_ALL, _SET_UNLESS_SKIPPED)
    await redis.script_flush()  # a restarted or newly promoted server
    await composed(redis, [(["list"], ["x"]), (["key"], ["go", "value"])])
    assert (await redis.lrange("list", 0, -1), await redis.get("key")) == (["x"], "value")


async def test_a_call_for_each_part_or_none_runs(redis: RedisClient) -> None:
    with pytest.raises(ValueError, match="2 calls expected, got 1"):
        await Composed(_PUSH_ALL, _PUSH_ALL)(redis, [(["list"], ["x"])])
    assert await redis.exists("list") == 0

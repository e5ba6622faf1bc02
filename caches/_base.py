"""Shared plumbing of the caches: Lua scripts run by SHA, TTL arguments, pipelines."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import timedelta
from importlib import resources
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from caches.redis import RedisClient

__all__ = [
    "TTL",
    "Call",
    "Composed",
    "Script",
    "is_cluster",
    "pipeline",
    "run_idempotent",
    "text",
    "ttl_ms",
]

TTL = timedelta | int | float
"""A TTL: a timedelta, or seconds."""


def text(value: object) -> str:
    """A reply as text, whether the caller's client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def ttl_ms(ttl: TTL) -> int:
    """A positive TTL in whole milliseconds; ValueError for zero or negative."""
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    ms = int(round(seconds * 1000))
    if ms <= 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return ms


_CLUSTER_TYPES: dict[type, bool] = {}


def is_cluster(client: RedisClient) -> bool:
    """Whether `client` is a cluster client, answered once per client class: redis-py's client
    classes derive from typing Protocols, so each `isinstance` walks their runtime check (2 % of
    a connect's CPU when asked on every call)."""
    kind = type(client)
    known = _CLUSTER_TYPES.get(kind)
    if known is None:
        known = _CLUSTER_TYPES[kind] = isinstance(client, RedisCluster)
    return known


def pipeline(client: RedisClient, *, transaction: bool = True) -> Pipeline | ClusterPipeline:
    """A MULTI pipeline; on a cluster, a plain one (its keys may sit in different slots)."""
    if is_cluster(client):
        return client.pipeline()
    return client.pipeline(transaction=transaction)


class Script:
    """A Lua script from `caches/scripts`, run by EVALSHA; on NOSCRIPT (a restarted or newly
    promoted node) by EVAL, which caches it on that node.

    Unlike redis-py's registered scripts in a pipeline, it never adds a SCRIPT EXISTS round trip.
    EVAL rather than SCRIPT LOAD: on a cluster, SCRIPT LOAD goes to every primary (a dead one
    among them during a failover), where EVAL goes only to the node of the script's keys.
    """

    def __init__(self, name: str, source: str | None = None) -> None:
        """The script `caches/scripts/{name}.lua`, or `source` under that name."""
        self.name = name
        if source is None:
            source = resources.files("caches.scripts").joinpath(f"{name}.lua").read_text()
        self.source = source
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: RedisClient, keys: Sequence[str], args: list[Any]) -> Any:
        # `execute_command`, which `evalsha` and `eval` only forward to: two calls less on the
        # paths that run a script per client event (typing).
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.execute_command("EVAL", self.source, len(keys), *keys, *args)


Call = tuple[Sequence[str], list[Any]]
"""A script call's keys and arguments."""


class Composed:
    """Several scripts run as one: one EVALSHA, one step on the server, atomic together. Each
    part runs in turn on its own keys and arguments, exactly as it would alone (its source is
    wrapped in a function whose `KEYS` and `ARGV` are its slices); the parts' replies are
    dropped. A part that fails ends the call there, and what ran before it stays written, as
    with any script. For one server only: the parts' keys may sit in different slots."""

    def __init__(self, *parts: Script) -> None:
        wrapped = "".join(
            f"local function part{n}(KEYS, ARGV)\n{part.source}\nend\n"
            for n, part in enumerate(parts, 1)
        )
        names = ", ".join(f"part{n}" for n in range(1, len(parts) + 1))
        source = (
            f"-- {' + '.join(part.name for part in parts)}: ARGV starts with each part's"
            " count of keys and of arguments\n"
            f"{wrapped}local key, arg = 0, {2 * len(parts)}\n"
            f"for n, run in ipairs({{{names}}}) do\n"
            "  local keys, args = {}, {}\n"
            "  for i = 1, tonumber(ARGV[2 * n - 1]) do keys[i] = KEYS[key + i] end\n"
            "  for i = 1, tonumber(ARGV[2 * n]) do args[i] = ARGV[arg + i] end\n"
            "  key, arg = key + #keys, arg + #args\n"
            "  run(keys, args)\n"
            "end\n"
            "return 1\n"
        )
        self._parts = len(parts)
        self._script = Script("+".join(part.name for part in parts), source)

    async def __call__(self, client: RedisClient, calls: list[Call]) -> None:
        """Run the parts, `calls[n]` the keys and arguments of part n."""
        if len(calls) != self._parts:
            raise ValueError(f"{self._parts} calls expected, got {len(calls)}")
        counts: list[Any] = []
        all_keys: list[str] = []
        all_args: list[Any] = []
        for part_keys, part_args in calls:
            counts += (len(part_keys), len(part_args))
            all_keys += part_keys
            all_args += part_args
        await self._script(client, all_keys, [*counts, *all_args])


async def run_idempotent(
    client: RedisClient, calls: list[tuple[Script, list[str], list[Any]]]
) -> list[Any]:
    """Run several idempotent script calls in one pipeline (one round trip).

    A NOSCRIPT answer (the server restarted) loads the scripts and runs the whole batch again,
    which is why every call must be safe to repeat.
    """
    if is_cluster(client):
        # A cluster client's pipelines refuse scripts: the calls go out concurrently instead,
        # each to its slot's node (Script reloads on NOSCRIPT by itself).
        return list(
            await asyncio.gather(*(script(client, keys, args) for script, keys, args in calls))
        )
    for attempt in range(2):
        pipe = pipeline(client, transaction=False)
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        failed = next((r for r in results if isinstance(r, ResponseError)), None)
        if failed is None:
            return results
        if attempt or not isinstance(failed, NoScriptError):
            raise failed
        for script in {script.name: script for script, _, _ in calls}.values():
            await client.script_load(script.source)
    raise AssertionError("unreachable")

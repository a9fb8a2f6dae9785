"""Load scenarios shared by ``bench/load.py`` (full size, figures) and
``tests/reliability/test_load.py`` (small size, correctness).

Each scenario runs inside an already open root actor, checks its own results and
returns a :class:`Figures` record: wall time and the peak RSS of the whole tree
(this process plus every descendant), sampled while it runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import trio

import notebook_actors as na

LOAD = __name__
#: how often the RSS sampler looks at the tree
SAMPLE_EVERY = 0.05

__all__ = ["Figures", "concurrent_contexts", "concurrent_rpcs", "many_actors", "slow_consumer"]


@dataclass
class Figures:
    name: str
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def tree_rss() -> int:
    """Resident memory of this process and all its descendants, in bytes."""
    me = psutil.Process()
    total: int = me.memory_info().rss
    for p in me.children(recursive=True):
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


async def measure(name: str, scenario: Callable[[Figures], Awaitable[None]]) -> Figures:
    """Run ``scenario(figures)`` while sampling the tree's RSS; fill in time and peak."""
    figures = Figures(name)
    peak = [tree_rss()]

    async def sample() -> None:
        while True:
            rss = await trio.to_thread.run_sync(tree_rss)
            peak[0] = max(peak[0], rss)
            await trio.sleep(SAMPLE_EVERY)

    async with trio.open_nursery() as n:
        n.start_soon(sample)
        t0 = time.perf_counter()
        await scenario(figures)
        figures.seconds = time.perf_counter() - t0
        n.cancel_scope.cancel()
    figures.peak_rss_mb = max(peak[0], tree_rss()) / 2**20
    return figures


# -- actor side -------------------------------------------------------------------------
def whoami() -> int:
    return os.getpid()


async def nap_echo(value: int) -> int:
    await trio.sleep(0.01)  # each call holds a task for a while: calls overlap
    return value


@na.context
async def produce(ctx: na.Context, count: int) -> int:
    """Stream ``count`` integers to the caller, as fast as its credit allows."""
    await ctx.started(os.getpid())
    async with ctx.open_stream() as stream:
        for i in range(count):
            await stream.send(i)
    return count


@na.context
async def echo_stream(ctx: na.Context, count: int) -> int:
    """Echo ``count`` messages back, doubled."""
    await ctx.started()
    async with ctx.open_stream() as stream:
        for _ in range(count):
            await stream.send(2 * await stream.receive())
    return count


# -- scenarios ---------------------------------------------------------------------------
async def many_actors(count: int, batch: int = 10) -> Figures:
    """``count`` daemon actors alive at once in one nursery (spawned ``batch`` at a time),
    each answering an RPC; then all cancelled."""

    async def run(f: Figures) -> None:
        async with na.open_nursery() as n:
            portals: list[na.Portal] = []
            t0 = time.perf_counter()
            for start in range(0, count, batch):
                async with trio.open_nursery() as tn:
                    for i in range(start, min(start + batch, count)):
                        tn.start_soon(_spawn_into, n, f"load{i}", portals)
            f.notes["start_actor_s"] = time.perf_counter() - t0
            pids: list[int] = []
            t0 = time.perf_counter()
            async with trio.open_nursery() as tn:
                for p in portals:
                    tn.start_soon(_ask_pid, p, pids)
            f.notes["all_answered_s"] = time.perf_counter() - t0
            assert len(set(pids)) == count, f"{len(set(pids))} distinct actors answered, expected {count}"
            f.notes["alive"] = sum(1 for p in psutil.Process().children() if p.pid in set(pids))
            f.notes["rss_mb"] = tree_rss() / 2**20
            t0 = time.perf_counter()
            await n.cancel()
            f.notes["teardown_s"] = time.perf_counter() - t0

    return await measure(f"{count} actors alive, each answering", run)


async def _spawn_into(n: na.ActorNursery, name: str, portals: list[na.Portal]) -> None:
    portals.append(await n.start_actor(name, enable_modules=[LOAD]))


async def _ask_pid(p: na.Portal, pids: list[int]) -> None:
    pids.append(await p.run(whoami))


async def concurrent_rpcs(count: int) -> Figures:
    """``count`` RPCs in flight at once to one actor."""

    async def run(f: Figures) -> None:
        async with na.open_nursery() as n:
            portal = await n.start_actor("target", enable_modules=[LOAD])
            await portal.run(whoami)
            results: list[int] = []

            async def call(i: int) -> None:
                results.append(await portal.run(nap_echo, value=i))

            t0 = time.perf_counter()
            async with trio.open_nursery() as tn:
                for i in range(count):
                    tn.start_soon(call, i)
            f.notes["calls_per_s"] = count / (time.perf_counter() - t0)
            assert sorted(results) == list(range(count))
            await portal.cancel_actor()

    return await measure(f"{count} concurrent RPCs to one actor", run)


async def slow_consumer(count: int, pause_every: int = 1000, pause: float = 0.001) -> Figures:
    """``count`` messages through one stream to a consumer that naps every
    ``pause_every`` messages; the producer's RSS is sampled to show it stays flat."""

    async def run(f: Figures) -> None:
        async with na.open_nursery() as n:
            portal = await n.start_actor("producer", enable_modules=[LOAD])
            async with portal.open_context(produce, count=count) as (ctx, pid):
                producer = psutil.Process(pid)
                t0 = time.perf_counter()
                rss: list[int] = []
                expected = 0
                async with ctx.open_stream() as stream:
                    async for v in stream:
                        assert v == expected, (v, expected)
                        expected += 1
                        if expected % pause_every == 0:
                            await trio.sleep(pause)
                        if expected % max(count // 20, 1) == 0:
                            rss.append(producer.memory_info().rss)
                assert await ctx.result() == count == expected
            f.notes["msgs_per_s"] = count / max(time.perf_counter() - t0, 1e-9)
            if rss:
                f.notes["producer_rss_first_mb"] = rss[0] / 2**20
                f.notes["producer_rss_last_mb"] = rss[-1] / 2**20
                f.notes["producer_rss_max_mb"] = max(rss) / 2**20
            await portal.cancel_actor()

    return await measure(f"{count:,} messages, slow consumer", run)


async def concurrent_contexts(count: int, messages: int = 100) -> Figures:
    """``count`` contexts open at once between this actor and one other, each echoing
    ``messages`` messages."""

    async def run(f: Figures) -> None:
        async with na.open_nursery() as n:
            portal = await n.start_actor("echoer", enable_modules=[LOAD])
            done: list[int] = []

            async def one(k: int) -> None:
                async with portal.open_context(echo_stream, count=messages) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        for i in range(messages):
                            await stream.send(i + k)
                            assert await stream.receive() == 2 * (i + k)
                    done.append(await ctx.result())

            t0 = time.perf_counter()
            async with trio.open_nursery() as tn:
                for k in range(count):
                    tn.start_soon(one, k)
            assert done == [messages] * count
            f.notes["round_trips_per_s"] = count * messages / max(time.perf_counter() - t0, 1e-9)
            await portal.cancel_actor()

    return await measure(f"{count} concurrent contexts between two actors", run)

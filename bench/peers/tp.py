"""trio-parallel: ``await trio_parallel.run_sync(fn)`` in a cached worker process.

It has no streams: only spawn, call round trip and memory apply.
"""

from __future__ import annotations

import trio

from .. import _fns
from .._util import RPC_N, SPAWN_REPS, now, round_trip_summary, rss_of


def unavailable() -> str | None:
    try:
        import trio_parallel  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc}); pip install -e '.[bench]'"
    return None


async def _first_results(count: int) -> float:
    import trio_parallel

    limiter = trio.CapacityLimiter(count)
    t0 = now()
    async with trio_parallel.open_worker_context() as wctx:
        async with trio.open_nursery() as n:
            for i in range(count):
                n.start_soon(lambda i=i: wctx.run_sync(_fns.trivial, i, limiter=limiter))
        elapsed = now() - t0
    return elapsed


def spawn1(quick: bool) -> dict:
    return {"spawn1_ms": [trio.run(_first_results, 1) * 1e3 for _ in range(SPAWN_REPS[quick])]}


def spawn10(quick: bool) -> dict:
    return {"spawn10_ms": [trio.run(_first_results, 10) * 1e3]}


async def _with_worker(body):
    import trio_parallel

    async with trio_parallel.open_worker_context() as wctx:
        await wctx.run_sync(_fns.trivial, 0)
        return await body(wctx)


def rpc(quick: bool) -> dict:
    async def body(wctx):
        times = []
        for i in range(RPC_N[quick] + 50):
            t0 = now()
            assert await wctx.run_sync(_fns.trivial, i) == i + 1
            times.append(now() - t0)
        return times[50:]

    return round_trip_summary(trio.run(_with_worker, body), "rpc")


def rss(quick: bool) -> dict:
    async def body(wctx):
        pid = await wctx.run_sync(_fns.getpid)
        await trio.sleep(0.3)  # settle after start-up (not a measurement)
        return rss_of(pid)

    return trio.run(_with_worker, body)


FIGURES = {"spawn1": spawn1, "spawn10": spawn10, "rpc": rpc, "rss": rss}

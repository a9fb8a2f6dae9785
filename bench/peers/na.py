"""notebook_actors itself, per spawn backend (``start_method``)."""

from __future__ import annotations

import os
import shutil
import tempfile

import trio

import notebook_actors as na

from .. import _fns, _na_fns
from .._util import RPC_N, SPAWN_REPS, STREAM_N, now, round_trip_summary, rss_of


def _root(start_method: str, registry_dir: str):
    # A private registry, so a registry that someone else runs at the default
    # address never joins in.
    return na.open_root_actor(start_method=start_method, registry_addrs=[os.path.join(registry_dir, "registry.sock")])


def _run(async_fn, *args):
    d = tempfile.mkdtemp(prefix="na-bench-")
    try:
        return trio.run(async_fn, d, *args)
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def _warm(start_method: str) -> None:
    """Bring a warm backend (the fork server) up before timing: it is started once per
    program (in the kernel: when the extension loads), not per spawn."""
    if start_method == "forkserver":
        from notebook_actors import _forkserver

        await _forkserver.ensure_started(wait_ready=True)


async def _first_results(count: int, times: list[float]) -> None:
    t0 = now()
    async with na.open_nursery() as n:
        portals = [await n.run_in_actor(_fns.trivial, name=f"t{i}", x=i) for i in range(count)]
        for i, p in enumerate(portals):
            assert await p.result() == i + 1
        times.append(now() - t0)


def make_figures(start_method: str) -> dict:
    def spawn(count: int, reps: int) -> list[float]:
        async def main(d: str) -> list[float]:
            times: list[float] = []
            async with _root(start_method, d):
                await _warm(start_method)
                for _ in range(reps):
                    await _first_results(count, times)
            return times

        return [t * 1e3 for t in _run(main)]

    def spawn1(quick: bool) -> dict:
        return {"spawn1_ms": spawn(1, SPAWN_REPS[quick])}

    def spawn10(quick: bool) -> dict:
        return {"spawn10_ms": spawn(10, 1)}

    def spawn1_root(quick: bool) -> dict:
        async def main(d: str) -> float:
            t0 = now()
            async with _root(start_method, d):
                await _warm(start_method)
                await _first_results(1, [])
            return now() - t0

        return {"spawn1_root_ms": [_run(main) * 1e3]}

    async def with_server(d: str, body):
        async with _root(start_method, d):
            await _warm(start_method)
            async with na.open_nursery() as n:
                portal = await n.start_actor("srv", enable_modules=["bench._fns", "bench._na_fns"])
                await portal.run(_fns.trivial)
                try:
                    return await body(portal)
                finally:
                    await portal.cancel_actor()

    def rpc(quick: bool) -> dict:
        async def body(portal):
            times = []
            for i in range(RPC_N[quick] + 50):  # the first 50 warm up
                t0 = now()
                assert await portal.run(_fns.trivial, x=i) == i + 1
                times.append(now() - t0)
            return times[50:]

        return round_trip_summary(_run(with_server, body), "rpc")

    def stream(quick: bool) -> dict:
        n_msgs = STREAM_N[quick]

        async def body(portal):
            async with portal.open_context(_na_fns.stream_ints, n=n_msgs) as (ctx, _):
                async with ctx.open_stream() as s:
                    t0 = now()
                    got = 0
                    async for _ in s:
                        got += 1
                    rate = got / (now() - t0)
            assert got == n_msgs
            return rate

        return {"stream_msgs_s": [_run(with_server, body)]}

    def echo(quick: bool) -> dict:
        async def body(portal):
            times = []
            async with portal.open_context(_na_fns.echo) as (ctx, _):
                async with ctx.open_stream() as s:
                    for i in range(RPC_N[quick] + 50):
                        t0 = now()
                        await s.send(i)
                        assert await s.receive() == i
                        times.append(now() - t0)
            return times[50:]

        return round_trip_summary(_run(with_server, body), "echo")

    def rss(quick: bool) -> dict:
        async def body(portal):
            pid = await portal.run(_fns.getpid)
            await trio.sleep(0.3)  # settle after start-up (not a measurement)
            return rss_of(pid)

        return _run(with_server, body)

    return {
        "spawn1": spawn1,
        "spawn1_root": spawn1_root,
        "spawn10": spawn10,
        "rpc": rpc,
        "stream": stream,
        "echo": echo,
        "rss": rss,
    }


def unavailable(start_method: str) -> str | None:
    from notebook_actors import _spawn

    if start_method not in _spawn.START_METHODS:
        return f"start_method {start_method!r} is not in this build ({', '.join(_spawn.START_METHODS)})"
    return None

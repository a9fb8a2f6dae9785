"""notebook_actors itself, per spawn backend: ``"default"`` (what a program gets
without naming one: the fork server on Linux) and ``"trio"`` (the subprocess
backend)."""

from __future__ import annotations

import os
import shutil
import tempfile

import trio

import notebook_actors as na
from notebook_actors import ext

from .. import _fns, _na_fns
from .._util import RPC_N, SPAWN_REPS, STREAM_N, now, round_trip_summary, rss_of


def _method(variant: str) -> str | None:
    return None if variant == "default" else variant


def _root(variant: str, registry_dir: str):
    # A private registry, so a registry that someone else runs at the default
    # address never joins in.
    return na.open_root_actor(
        start_method=_method(variant), registry_addrs=[os.path.join(registry_dir, "registry.sock")]
    )


def _run(async_fn, *args):
    d = tempfile.mkdtemp(prefix="na-bench-")
    try:
        return trio.run(async_fn, d, *args)
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def _warm(variant: str) -> None:
    """Bring a warm backend (the fork server's template) up before timing: a program
    starts it once, with its first spawn (in the kernel: when the extension loads),
    not per spawn. ``spawn1_root`` times a program's cold first spawn instead."""
    from notebook_actors import _spawn

    if (_method(variant) or _spawn.default_start_method()) == "forkserver":
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
            async with _root(start_method, d):  # cold: the first spawn starts the template
                await _first_results(1, [])
            return now() - t0

        return {"spawn1_root_ms": [_run(main) * 1e3]}

    def spawn_nested(quick: bool) -> dict:
        """root -> a -> b until b's result: a new actor's first spawn (the root's
        template warm, as for ``spawn1``), in a program that asks for born templates
        (as a notebook does; a program's default is none)."""

        async def main(d: str) -> list[float]:
            times: list[float] = []
            async with _root(start_method, d):
                await _warm(start_method)
                await ext.warm_up(_method(start_method), nested=True)
                for _ in range(SPAWN_REPS[quick]):
                    t0 = now()
                    async with na.open_nursery() as n:
                        portal = await n.run_in_actor(_na_fns.spawn_one, name="a", enable_modules=["bench._na_fns"])
                        assert await portal.result() == 2
                        times.append(now() - t0)
            return times

        return {"spawn_nested_ms": [t * 1e3 for t in _run(main)]}

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

    def fanout(quick: bool) -> dict:
        """``FANOUT[quick]`` daemon actors at once (each answers one call), held alive
        together, then cancelled: spawn time per actor, teardown, memory per actor."""
        count = FANOUT[quick]

        async def main(d: str) -> dict:
            async with _root(start_method, d):
                await _warm(start_method)
                t0 = now()
                async with na.open_nursery() as n:
                    portals = [await n.start_actor(f"f{i}", enable_modules=["bench._fns"]) for i in range(count)]
                    pids = []
                    async with trio.open_nursery() as calls:

                        async def call(p):
                            pids.append(await p.run(_fns.getpid))

                        for p in portals:
                            calls.start_soon(call, p)
                    spawned = now() - t0
                    mem = _memory_of(pids)
                    t1 = now()
                    await n.cancel()
                teardown = now() - t1
            return {
                "fanout_n": [count],
                "fanout_spawn_per_actor_ms": [spawned * 1e3 / count],
                "fanout_teardown_ms": [teardown * 1e3],
                **mem,
            }

        return _run(main)

    figures = {
        "spawn1": spawn1,
        "spawn1_root": spawn1_root,
        "spawn10": spawn10,
        "spawn_nested": spawn_nested,
        "rpc": rpc,
        "stream": stream,
        "echo": echo,
        "rss": rss,
    }
    if start_method == "default":  # a thousand subprocesses would take minutes and ~25 GB
        figures["fanout"] = fanout
    return figures


#: actors in the fan-out figure (full / quick)
FANOUT = {False: 1000, True: 100}
#: actors whose unique pages are read (reading smaps costs ~10 ms per process)
FANOUT_MEMORY_SAMPLE = 50


def _memory_of(pids: list[int]) -> dict:
    """RSS per actor (all of them) and USS per actor (a sample), in MB."""
    import psutil

    rss = [psutil.Process(pid).memory_info().rss / 1e6 for pid in pids]
    step = max(1, len(pids) // FANOUT_MEMORY_SAMPLE)
    uss = [psutil.Process(pid).memory_full_info().uss / 1e6 for pid in pids[::step]]
    return {"fanout_rss_mb": [sum(rss) / len(rss)], "fanout_uss_mb": [sum(uss) / len(uss)]}


def unavailable(start_method: str) -> str | None:
    from notebook_actors import _spawn

    if start_method != "default" and start_method not in _spawn.START_METHODS:
        return f"start_method {start_method!r} is not in this build ({', '.join(_spawn.START_METHODS)})"
    return None

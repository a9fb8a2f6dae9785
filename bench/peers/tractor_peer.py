"""tractor (the project whose API we follow), run by an interpreter where it imports.

tractor 0.1.0a5, the last release on PyPI, does not install with pip on Python 3.11
(it declares a git URL dependency); ``python -m bench --setup-tractor`` installs it
without dependencies into a side venv with the trio it supports, and this peer runs
there.
"""

from __future__ import annotations

import socket
import warnings

import trio

from .. import _fns
from .._util import RPC_N, SPAWN_REPS, STREAM_N, now, round_trip_summary, rss_of

warnings.filterwarnings("ignore")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _root():
    import tractor

    # A private registry port, so someone else's registry at the default never joins.
    return tractor.open_root_actor(arbiter_addr=("127.0.0.1", _free_port()))


async def _first_results(count: int, times: list[float]) -> None:
    import tractor

    t0 = now()
    async with tractor.open_nursery() as n:
        portals = [await n.run_in_actor(_fns.atrivial, name=f"t{i}", x=i) for i in range(count)]
        for i, p in enumerate(portals):
            assert await p.result() == i + 1
        times.append(now() - t0)


def _spawn(count: int, reps: int) -> list[float]:
    async def main() -> list[float]:
        times: list[float] = []
        async with _root():
            for _ in range(reps):
                await _first_results(count, times)
        return times

    return [t * 1e3 for t in trio.run(main)]


def spawn1(quick: bool) -> dict:
    return {"spawn1_ms": _spawn(1, SPAWN_REPS[quick])}


def spawn10(quick: bool) -> dict:
    return {"spawn10_ms": _spawn(10, 1)}


def spawn1_root(quick: bool) -> dict:
    async def main() -> float:
        t0 = now()
        async with _root():
            await _first_results(1, [])
        return now() - t0

    return {"spawn1_root_ms": [trio.run(main) * 1e3]}


def _with_server(body):
    import tractor

    async def main():
        async with _root():
            async with tractor.open_nursery() as n:
                portal = await n.start_actor("srv", enable_modules=["bench._fns", "bench._tractor_fns"])
                await portal.run(_fns.atrivial)
                try:
                    return await body(portal)
                finally:
                    await portal.cancel_actor()

    return trio.run(main)


def rpc(quick: bool) -> dict:
    async def body(portal):
        times = []
        for i in range(RPC_N[quick] + 50):
            t0 = now()
            assert await portal.run(_fns.atrivial, x=i) == i + 1
            times.append(now() - t0)
        return times[50:]

    return round_trip_summary(_with_server(body), "rpc")


def stream(quick: bool) -> dict:
    from .. import _tractor_fns

    n_msgs = STREAM_N[quick] // 5  # an order of magnitude slower: keep the sample short

    async def body(portal):
        async with portal.open_context(_tractor_fns.stream_ints, n=n_msgs) as (ctx, _):
            async with ctx.open_stream() as s:
                t0 = now()
                got = 0
                async for _ in s:
                    got += 1
                rate = got / (now() - t0)
        assert got == n_msgs
        return rate

    return {"stream_msgs_s": [_with_server(body)]}


def echo(quick: bool) -> dict:
    from .. import _tractor_fns

    async def body(portal):
        times = []
        async with portal.open_context(_tractor_fns.echo) as (ctx, _):
            async with ctx.open_stream() as s:
                for i in range(RPC_N[quick] + 50):
                    t0 = now()
                    await s.send(i)
                    assert await s.receive() == i
                    times.append(now() - t0)
        return times[50:]

    return round_trip_summary(_with_server(body), "echo")


def rss(quick: bool) -> dict:
    async def body(portal):
        pid = await portal.run(_fns.agetpid)
        await trio.sleep(0.3)  # settle after start-up (not a measurement)
        return rss_of(pid)

    return _with_server(body)


FIGURES = {
    "spawn1": spawn1,
    "spawn1_root": spawn1_root,
    "spawn10": spawn10,
    "rpc": rpc,
    "stream": stream,
    "echo": echo,
    "rss": rss,
}


def unavailable() -> str | None:
    try:
        import tractor  # noqa: F401
    except ImportError as exc:
        return f"does not import here ({exc})"
    return None

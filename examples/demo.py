"""The tour that `make demo` runs: a small tree of actors doing real work.

It spawns actors, calls them, streams between them, shows an error crossing two
processes, tears the tree down and checks that no process is left.
"""

from __future__ import annotations

import os
import time

import psutil
import trio

import notebook_actors as na


def cube(x: int) -> int:
    return x**3


async def countdown(n: int):
    for i in range(n, 0, -1):
        yield i


@na.context
async def doubler(ctx: na.Context) -> int:
    """Echo every number doubled; return how many were seen."""
    await ctx.started(os.getpid())
    seen = 0
    async with ctx.open_stream() as stream:
        async for n in stream:
            await stream.send(n * 2)
            seen += 1
    return seen


def divide(a: float, b: float) -> float:
    return a / b


async def middle_manager() -> float:
    """Runs in a child and spawns its own child, which fails."""
    async with na.open_nursery() as n:
        portal = await n.run_in_actor(divide, a=1, b=0)
        return await portal.result()


def step(text: str) -> None:
    print(f"--> {text}", flush=True)


async def main() -> None:
    me = psutil.Process()
    started = time.perf_counter()
    async with na.open_nursery() as nursery:
        root = na.current_actor()
        step(f"root actor {root.uid[0]!r} runs in pid {os.getpid()} (registry host: {root.is_arbiter})")

        portal = await nursery.run_in_actor(cube, x=3)
        step(f"run_in_actor(cube, x=3) -> {await portal.result()}")

        worker = await nursery.start_actor("worker", enable_modules=[__name__])
        results = [await worker.run(cube, x=i) for i in range(5)]
        step(f"daemon 'worker' answered 5 RPCs: {results}")

        async with worker.open_stream_from(countdown, n=5) as stream:
            step(f"streamed from an async generator: {[v async for v in stream]}")

        async with worker.open_context(doubler) as (ctx, pid):
            async with ctx.open_stream() as stream:
                echoed = []
                for i in range(1, 4):
                    await stream.send(i)
                    echoed.append(await stream.receive())
            step(f"two-way stream with pid {pid}: sent [1, 2, 3], got {echoed}")
        step(f"the context returned {await ctx.result()}")

        pids = sorted(p.pid for p in me.children(recursive=True))
        step(f"live actor processes under the root: {pids}")
        await worker.cancel_actor()

    try:
        async with na.open_nursery() as nursery:
            await nursery.run_in_actor(middle_manager)
    except na.RemoteActorError as err:
        path = " -> ".join(uid[0] for uid in err.relay_path)
        step(f"an error two processes down came back as {err.type_name} via {path}")

    left = [p for p in me.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    step(f"processes left after the trees closed: {len(left)}")
    step(f"done in {time.perf_counter() - started:.2f}s")
    if left:
        raise SystemExit("some actor processes survived: this is a bug")


if __name__ == "__main__":
    trio.run(main)

"""Actors for tree_widget.ipynb: a nested tree with a stream, and a few idle workers.

They live in a module (not in a notebook cell) so every actor of the tree, however
deep, can import them by name.
"""

from __future__ import annotations

import trio

import notebook_actors as na


@na.context
async def produce(ctx, period: float = 0.02):
    """Stream a counter to the caller until cancelled, printing now and then."""
    await ctx.started()
    async with ctx.open_stream() as stream:
        i = 0
        while True:
            await stream.send(i)
            if i % 100 == 0:
                print(f"produced {i} values", flush=True)
            i += 1
            await trio.sleep(period)


async def pipeline() -> None:
    """Spawn a 'producer' below this actor and consume its stream."""
    async with na.open_nursery() as n:
        producer = await n.start_actor("producer", enable_modules=[__name__])
        async with producer.open_context(produce) as (ctx, _):
            async with ctx.open_stream() as stream:
                async for value in stream:
                    if value % 100 == 0:
                        print(f"consumed {value}", flush=True)


async def demo_tree(workers: int = 3) -> None:
    """root → pipeline → producer (streaming), and idle worker-1..N, until cancelled.

    A worker cancelled from the widget simply leaves; the rest keeps running.
    """
    async with na.open_nursery() as n:
        for i in range(1, workers + 1):
            await n.start_actor(f"worker-{i}", enable_modules=[__name__])
        mid = await n.start_actor("pipeline", enable_modules=[__name__])
        await mid.run(pipeline)


def divide(a: float, b: float) -> float:
    """Crash (with b=0) so the tree shows how a failed actor looks."""
    return a / b

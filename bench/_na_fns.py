"""notebook_actors endpoints for the benchmarks (kept apart from ``_fns`` so that
multiprocessing children never import the runtime)."""

from __future__ import annotations

import notebook_actors as na


@na.context
async def stream_ints(ctx, n: int) -> int:
    await ctx.started()
    async with ctx.open_stream() as stream:
        for i in range(n):
            await stream.send(i)
    return n


@na.context
async def echo(ctx) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        async for msg in stream:
            await stream.send(msg)


async def spawn_one() -> int:
    """Spawn one child (its first spawn) and return the child's trivial result: the
    middle of the nested-spawn figure."""
    from . import _fns

    async with na.open_nursery() as n:
        portal = await n.run_in_actor(_fns.trivial, name="b", x=1)
        return await portal.result()

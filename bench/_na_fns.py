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

"""tractor endpoints for the benchmarks (run by tractor's own interpreter)."""

from __future__ import annotations

import tractor


@tractor.context
async def stream_ints(ctx, n: int) -> int:
    await ctx.started()
    async with ctx.open_stream() as stream:
        for i in range(n):
            await stream.send(i)
    return n


@tractor.context
async def echo(ctx) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        async for msg in stream:
            await stream.send(msg)

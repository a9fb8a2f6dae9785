"""A breakpoint inside a @context endpoint while it streams, then one in the root."""

import trio

import notebook_actors as na


@na.context
async def counter(ctx, limit: int) -> str:
    await ctx.started(limit)
    async with ctx.open_stream() as stream:
        for i in range(limit):
            if i == 2:
                await na.breakpoint()
            await stream.send(i)
    return "counted"


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        portal = await n.start_actor("counter", enable_modules=[__name__])
        async with portal.open_context(counter, limit=4) as (ctx, _first):
            async with ctx.open_stream() as stream:
                received = [value async for value in stream]
        print("received:", received, await ctx.result())
        await na.breakpoint()  # the root's own REPL: the same prompt, on this terminal
        await portal.cancel_actor()


if __name__ == "__main__":
    trio.run(main)

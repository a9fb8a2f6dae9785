"""A tractor script, unchanged but for its import: streaming between actors.

    python examples/tractor_compat/streams.py

``portal.open_stream_from`` reads what an async generator yields in another actor;
``portal.open_context`` plus ``ctx.open_stream`` gives a two-way stream with a
handshake value (``ctx.started``) and a final result (``ctx.result``).
"""

import trio

import notebook_actors as tractor


async def fibonacci(count: int):
    a, b = 0, 1
    for _ in range(count):
        yield a
        a, b = b, a + b


@tractor.context
async def uppercaser(ctx: tractor.Context, banner: str) -> int:
    """Answer every message with its upper-case form until the caller closes."""
    await ctx.started(banner)
    answered = 0
    async with ctx.open_stream() as stream:
        async for text in stream:
            await stream.send(text.upper())
            answered += 1
    return answered


async def main() -> None:
    async with tractor.open_nursery() as nursery:
        portal = await nursery.start_actor("streamer", enable_modules=[__name__])

        async with portal.open_stream_from(fibonacci, count=10) as stream:
            print("fibonacci:", [n async for n in stream])

        async with portal.open_context(uppercaser, banner="ready") as (ctx, first):
            print("callee started with:", first)
            async with ctx.open_stream() as stream:
                for word in ("actors", "all", "the", "way", "down"):
                    await stream.send(word)
                    print("echo:", await stream.receive())
        print("callee answered", await ctx.result(), "messages")

        await portal.cancel_actor()


if __name__ == "__main__":
    trio.run(main)

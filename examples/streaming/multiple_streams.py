"""Several streams over one portal at once.

One worker actor, one channel: two async-generator streams, a legacy ``@stream``
function and a two-way context stream all run concurrently. Each call has its own
id and its own flow-control window, so a slow stream never stalls the others.
"""

import trio

import notebook_actors as tractor


async def squares(count: int):
    for i in range(count):
        yield i * i


async def letters(text: str):
    for ch in text:
        yield ch


@tractor.stream
async def countdown(ctx: tractor.Context, start: int) -> None:
    for i in range(start, -1, -1):
        await ctx.send_yield(i)


@tractor.context
async def upper(ctx: tractor.Context) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        async for word in stream:
            await stream.send(word.upper())


async def main() -> None:
    results: dict[str, object] = {}
    async with tractor.open_nursery() as n:
        worker = await n.start_actor("worker", enable_modules=[__name__])

        async def sum_squares() -> None:
            async with worker.open_stream_from(squares, count=10_000) as stream:
                results["sum of squares"] = sum([v async for v in stream])

        async def spell() -> None:
            async with worker.open_stream_from(letters, text="notebook actors") as stream:
                results["letters"] = "".join([c async for c in stream])

        async def count_down() -> None:
            async with worker.open_stream_from(countdown, start=5) as stream:
                results["countdown"] = [i async for i in stream]

        async def shout() -> None:
            async with worker.open_context(upper) as (ctx, _):
                async with ctx.open_stream() as stream:
                    words = []
                    for word in ["many", "streams", "one", "portal"]:
                        await stream.send(word)
                        words.append(await stream.receive())
                    results["shout"] = " ".join(words)

        async with trio.open_nursery() as tn:
            for job in (sum_squares, spell, count_down, shout):
                tn.start_soon(job)
        await worker.cancel_actor()
    for key, value in results.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    trio.run(main)

"""An asyncio echo server in an "infected" actor, driven from trio over a context stream.

The child actor's main loop is asyncio (``infect_asyncio=True``); trio runs as a guest
on it. ``open_channel_from`` links a trio task to an asyncio task: what the parent
streams in goes to the asyncio side, what it echoes comes back.
"""

import asyncio

import trio

import notebook_actors as tractor
from notebook_actors import to_asyncio


async def aio_echo_server(to_trio: trio.MemorySendChannel, from_trio: asyncio.Queue) -> None:
    to_trio.send_nowait("start")  # the first value: `first` on the trio side
    while True:
        msg = await from_trio.get()  # from the trio task
        to_trio.send_nowait(msg)  # echo it back


@tractor.context
async def trio_to_aio_echo_server(ctx: tractor.Context) -> None:
    async with to_asyncio.open_channel_from(aio_echo_server) as (first, chan):
        assert first == "start"
        await ctx.started(first)
        async with ctx.open_stream() as stream:
            async for msg in stream:
                await chan.send(msg)
                out = await chan.receive()
                await stream.send(out)  # echo back to the parent actor


async def main() -> None:
    async with tractor.open_nursery() as n:
        portal = await n.start_actor("aio_server", enable_modules=[__name__], infect_asyncio=True)
        async with portal.open_context(trio_to_aio_echo_server) as (ctx, first):
            assert first == "start"
            async with ctx.open_stream() as stream:
                for i in range(10):
                    await stream.send(i)
                    out = await stream.receive()
                    assert out == i
                    print(f"echoed {out}")
        await portal.cancel_actor()  # the asyncio task is cancelled with it


if __name__ == "__main__":
    trio.run(main)

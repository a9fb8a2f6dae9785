"""Two daemon actors: one streams and re-enters its breakpoint forever, the other
crashes with a NameError. Both share the one routed REPL; the crash waits its turn."""

import trio

import notebook_actors as na


async def breakpoint_forever():
    """Indefinitely re-enter the debugger in a child actor."""
    while True:
        await na.breakpoint()
        yield "yo"


async def name_error():
    """Raise a ``NameError``."""
    getattr(no_such_name)  # noqa: F821


async def main():
    async with na.open_nursery(debug_mode=True) as n:
        p0 = await n.start_actor("bp_forever", enable_modules=[__name__])
        p1 = await n.start_actor("name_error", enable_modules=[__name__])
        async with p0.open_stream_from(breakpoint_forever) as stream:
            await stream.receive()  # the first REPL was continued: now crash the other one
            await p1.run(name_error)


if __name__ == "__main__":
    trio.run(main)

"""Helper script for the tests: a debug-mode tree that idles with no REPL open."""

import trio

import notebook_actors as na


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        portal = await n.start_actor("idler", enable_modules=[__name__])
        print("pong:", await portal.run_from_ns("self", "ping"), flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)

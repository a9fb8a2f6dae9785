"""A breakpoint in a loop: stepping with `n` reaches the next breakpoint in the same session.

Run as is (the loop runs in a child) or with `root` (it runs in the root actor).
Try: `n` a few times (a variable is called `n` too: `n` still steps, `p n` shows it),
then `c` at each stop until it has counted to 3.
"""

import sys

import trio

import notebook_actors as na


async def count_up(limit: int) -> int:
    n = 0
    while n < limit:
        n += 1
        await na.breakpoint()
    return n


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        if sys.argv[1:] == ["root"]:
            print("counted to", await count_up(3))
        else:
            portal = await n.run_in_actor(count_up, limit=3, name="looper")
            print("counted to", await portal.result())


if __name__ == "__main__":
    trio.run(main)

"""Ctrl-C at the REPL interrupts what it evaluates in the child; the tree stays up.

Try: `p spin()` (it never returns), Ctrl-C, then `p rounds` and `c`.
"""

import sys

import trio

import notebook_actors as na


def spin() -> int:
    print("spinning", file=sys.stderr, flush=True)
    total = 0
    while True:
        total += 1


async def inspect() -> str:
    rounds = 3
    await na.breakpoint()
    return f"resumed after {rounds} rounds"


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        portal = await n.run_in_actor(inspect, name="inspector")
        print(await portal.result())


if __name__ == "__main__":
    trio.run(main)

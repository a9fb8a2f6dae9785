"""A breakpoint in a child actor: the REPL shows on the root's terminal.

Try: `p answer`, `ll`, `where`, then `c` (the child returns) or `q` (its task is
cancelled and the root sees ContextCancelled).
"""

import trio

import notebook_actors as na


async def compute() -> int:
    answer = 6 * 7
    await na.breakpoint()
    return answer


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        portal = await n.run_in_actor(compute, name="compute")
        print("result:", await portal.result())


if __name__ == "__main__":
    trio.run(main)

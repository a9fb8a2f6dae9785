"""`pause_from_sync()` in plain functions: in a child's trio thread and in a worker thread.

Run with `inline` (the sync function runs in the child's trio thread) or `thread` (it
runs in a worker thread of the child, `trio.to_thread.run_sync`).
Try: `p total`, `ll`, then `c`.
"""

import sys

import trio

import notebook_actors as na


def add_up(items: list) -> int:
    total = sum(items)
    na.pause_from_sync()
    return total


async def in_trio_thread(items: list) -> int:
    return add_up(items)


async def in_worker_thread(items: list) -> int:
    return await trio.to_thread.run_sync(add_up, items)


async def main() -> None:
    where = in_worker_thread if sys.argv[1:] == ["thread"] else in_trio_thread
    async with na.open_nursery(debug_mode=True) as n:
        portal = await n.run_in_actor(where, items=[1, 2, 3], name="adder")
        print("total:", await portal.result())


if __name__ == "__main__":
    trio.run(main)

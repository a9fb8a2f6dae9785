"""Python's builtin breakpoint() in a child actor goes to the routed REPL in debug mode."""

import trio

import notebook_actors as na


def sync_work(items: list) -> int:
    total = sum(items)
    breakpoint()
    return total


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        portal = await n.run_in_actor(sync_work, items=[1, 2, 3])
        print("total:", await portal.result())


if __name__ == "__main__":
    trio.run(main)

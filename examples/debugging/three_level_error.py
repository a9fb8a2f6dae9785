"""root -> spawner -> crasher: each level shows its post-mortem, deepest first."""

import trio

import notebook_actors as na


async def crasher(depth: int) -> None:
    secret = "deep"
    raise RuntimeError(f"crash at depth {depth} ({secret})")


async def spawner() -> None:
    async with na.open_nursery() as n:
        await n.run_in_actor(crasher, depth=3)


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        await n.run_in_actor(spawner)


if __name__ == "__main__":
    trio.run(main)

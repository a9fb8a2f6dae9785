"""Host the actor runtime inside a plain asyncio program.

``start_guest_actor()`` runs the root actor as a trio guest on the running asyncio
loop (the same way the Jupyter kernel extension does). asyncio code hands trio work
to it with ``await ga.run(trio_fn, ...)``; leaving the block cancels the whole tree
and waits until every child process is gone, before the loop closes.
"""

import asyncio

import notebook_actors as tractor
from notebook_actors import to_asyncio


def cube(x: int) -> int:
    return x**3


async def cubes_in_actors(xs: list[int]) -> list[int]:
    """trio code: one actor per number."""
    async with tractor.open_nursery() as n:
        portals = [await n.run_in_actor(cube, x=x, name=f"cube{x}") for x in xs]
        return [await p.result() for p in portals]


async def main() -> None:
    async with to_asyncio.start_guest_actor(name="asyncio_host") as ga:
        print("root actor:", ga.actor.name, "infected:", ga.actor.is_infected_aio())
        results = await ga.run(cubes_in_actors, [1, 2, 3])
        print("cubes:", results)
    print("tree closed:", ga.guest.done())


if __name__ == "__main__":
    asyncio.run(main())

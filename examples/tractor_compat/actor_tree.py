"""A tractor script, unchanged but for its import: a tree of actors.

    python examples/tractor_compat/actor_tree.py

It uses tractor's calls as a tractor user writes them: ``open_nursery``,
``run_in_actor`` (one function, one process, a result), ``start_actor`` plus
``portal.run`` (a daemon serving calls), a child that opens its own nursery, and
one-cancels-all supervision turning a child's crash into a ``RemoteActorError``.
"""

import os

import trio

import notebook_actors as tractor


def cube(x: int) -> int:
    return x**3


async def whoami() -> str:
    actor = tractor.current_actor()
    return f"{actor.name} (root: {tractor.is_root_process()})"


async def spawn_grandchild() -> int:
    """Runs in a child: any actor may open a nursery of its own."""
    async with tractor.open_nursery() as nursery:
        portal = await nursery.run_in_actor(cube, x=4)
    return await portal.result()


def explode() -> None:
    raise ValueError(f"actor {tractor.current_actor().name} (pid {os.getpid()}) gave up")


async def main() -> None:
    async with tractor.open_nursery() as nursery:
        one_shot = await nursery.run_in_actor(cube, x=3)
        nested = await nursery.run_in_actor(spawn_grandchild, name="parent_of_one")
        daemon = await nursery.start_actor("worker", enable_modules=[__name__])
        print("worker says it is", await daemon.run(whoami))
        print("worker cubes 5:", await daemon.run(__name__, "cube", x=5))
        await daemon.cancel_actor()
    print("run_in_actor result:", await one_shot.result())
    print("grandchild result:", await nested.result())

    try:
        async with tractor.open_nursery() as nursery:
            await nursery.start_actor("bystander", enable_modules=[__name__])
            await nursery.run_in_actor(explode)
    except tractor.RemoteActorError as err:
        print(f"the tree came down: {err.type.__name__} from {err.src_uid[0]}")


if __name__ == "__main__":
    trio.run(main)

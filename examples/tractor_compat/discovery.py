"""A tractor script, unchanged but for its import: actors finding each other by name.

    python examples/tractor_compat/discovery.py

Every actor registers with the root's registry. A child looks its sibling up with
``wait_for_actor`` and calls it; ``find_actor`` yields ``None`` for a name nobody
has; ``get_arbiter`` is a portal to the registry itself.
"""

import trio

import notebook_actors as tractor


def greet(who: str) -> str:
    return f"hello {who}, from {tractor.current_actor().name}"


async def call_sibling() -> str:
    """Runs in a child: find the 'greeter' by name and call it."""
    async with tractor.wait_for_actor("greeter") as portal:
        return await portal.run(greet, who=tractor.current_actor().name)


async def main() -> None:
    async with tractor.open_nursery() as nursery:
        greeter = await nursery.start_actor("greeter", enable_modules=[__name__])
        caller = await nursery.run_in_actor(call_sibling, name="caller")
        print(await caller.result())

        async with tractor.find_actor("greeter") as portal:
            print("found greeter:", portal is not None)
        async with tractor.find_actor("nobody") as portal:
            print("found nobody:", portal is not None)

        async with tractor.get_arbiter() as registry:
            entries = await registry.run_from_ns("self", "get_registry")  # {"name.uuid": addr}
        names = {key.rsplit(".", 1)[0] for key in entries}
        # ('caller' may or may not have deregistered yet: its result came before its exit)
        print("registry lists root and greeter:", {"root", "greeter"} <= names)
        await greeter.cancel_actor()


if __name__ == "__main__":
    trio.run(main)

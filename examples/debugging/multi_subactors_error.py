"""Two children crash at once: their post-mortems queue on the tree's REPL lock."""

import trio

import notebook_actors as na


async def name_error() -> None:
    getattr(no_such_name)  # noqa: F821


async def value_error(bad: int) -> None:
    raise ValueError(f"bad value {bad}")


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        await n.run_in_actor(name_error)
        await n.run_in_actor(value_error, bad=13)


if __name__ == "__main__":
    trio.run(main)

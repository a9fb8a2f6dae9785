"""A crash in a child (debug mode): its post-mortem opens at the crashing frame, then
the root's post-mortem for the boxed error. With --no-debug the error just propagates."""

import sys

import trio

import notebook_actors as na


async def divide(numerator: int) -> float:
    denominator = 0
    return numerator / denominator


async def main() -> None:
    async with na.open_nursery(debug_mode="--no-debug" not in sys.argv) as n:
        await n.run_in_actor(divide, name="divider", numerator=10)


if __name__ == "__main__":
    trio.run(main)

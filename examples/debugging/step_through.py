"""Step through a child's task with `n`, `s` and `r`: the session stays open while the
task runs (across awaits) to the next stop; `c` ends it."""

import trio
import trio.lowlevel

import notebook_actors as na


async def double(x: int) -> int:
    doubled = x * 2
    return doubled


async def stepper() -> int:
    start = 20
    await na.breakpoint()
    await trio.lowlevel.checkpoint()
    value = await double(start + 1)
    return value


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        portal = await n.run_in_actor(stepper)
        print("result:", await portal.result())


if __name__ == "__main__":
    trio.run(main)

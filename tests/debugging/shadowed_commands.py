"""A child whose frame has variables named `n`, `s` and `c`: at its breakpoint the bare
commands step, step in and continue; expressions using those names are evaluated."""

import trio

import notebook_actors as na


def helper(x: int) -> int:
    doubled = x * 2
    return doubled


async def shadowed() -> str:
    n, s, c = 1, "text", [3, 4]
    await na.breakpoint()
    total = helper(n)
    return f"{s} {[*c, total]}"


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as nursery:
        portal = await nursery.run_in_actor(shadowed, name="shadow")
        print("result:", await portal.result())


if __name__ == "__main__":
    trio.run(main)

"""A child that re-enters the debugger on every turn of its loop; `q` ends it."""

import trio

import notebook_actors as na


async def breakpoint_forever() -> None:
    turn = 0
    while True:
        turn += 1
        await na.breakpoint()


async def main() -> None:
    async with na.open_nursery(debug_mode=True) as n:
        await n.run_in_actor(breakpoint_forever)


if __name__ == "__main__":
    try:
        trio.run(main)
    except na.ContextCancelled as exc:
        print(f"cancelled from the debugger: canceller={exc.canceller[0]}")

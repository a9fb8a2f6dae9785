"""A tree for the stack-dump tests: `stuck` blocks in synchronous code (its trio loop
cannot run), `middle` runs `waiter`, which waits in trio. Prints one line per actor as
it gets there: `<name> <pid>`."""

import os
import sys
import time

import trio

import notebook_actors as na


def blocked_in_sync_code() -> None:
    print("stuck", os.getpid(), flush=True)
    time.sleep(600)


async def stuck() -> None:
    blocked_in_sync_code()


async def waiting_in_trio() -> None:
    print("waiter", os.getpid(), flush=True)
    await trio.sleep_forever()


async def middle() -> None:
    async with na.open_nursery() as n:
        await n.run_in_actor(waiting_in_trio, name="waiter")


async def main(registry: str) -> None:
    async with na.open_nursery(registry_addrs=[registry]) as n:
        await n.run_in_actor(stuck, name="stuck")
        await n.run_in_actor(middle, name="middle")
        await trio.sleep_forever()


if __name__ == "__main__":
    try:
        trio.run(main, sys.argv[1])
    except KeyboardInterrupt:
        pass

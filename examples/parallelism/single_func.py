"""Run one function in a new process and get its result back.

    python examples/parallelism/single_func.py

``run_in_actor`` starts an actor (a process) that runs the function once and exits;
the nursery block waits for it. The function lives in this script: the child loads
the script as ``__mp_main__`` (the way multiprocessing does), which is why the
``if __name__ == "__main__":`` guard at the bottom matters.
"""

import os

import trio

import notebook_actors as na


def burn_cpu(n: int) -> dict:
    """Some work worth a process of its own."""
    total = sum(i * i for i in range(n))
    return {"pid": os.getpid(), "total": total}


async def main() -> None:
    async with na.open_nursery() as nursery:
        portal = await nursery.run_in_actor(burn_cpu, n=1_000_000)
    # the block waited for the actor; its result is kept on the portal
    result = await portal.result()
    print(f"root (pid {os.getpid()}) got {result['total']} from an actor (pid {result['pid']})")


if __name__ == "__main__":
    trio.run(main)

"""The stdlib's ProcessPoolExecutor primes example, done with actors and IPC only.

    python examples/parallelism/concurrent_actors_primes.py

A pool of one daemon actor per CPU; a trio channel hands out the numbers; each worker
task asks its actor over RPC. Results are printed in input order, like
``executor.map`` does.
"""

import math
import os
import time

import trio

import notebook_actors as na

PRIMES = [
    112272535095293,
    112582705942171,
    112272535095293,
    115280095190773,
    115797848077099,
    1099726899285419,
]


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False
    sqrt_n = math.floor(math.sqrt(n))
    for i in range(3, sqrt_n + 1, 2):
        if n % i == 0:
            return False
    return True


async def ask_actor(portal: na.Portal, jobs: trio.MemoryReceiveChannel, results: dict) -> None:
    async for index, number in jobs:
        results[index] = await portal.run(is_prime, n=number)


async def main() -> None:
    start = time.perf_counter()
    workers = min(os.cpu_count() or 1, len(PRIMES))
    results: dict[int, bool] = {}
    async with na.open_nursery() as nursery:
        # functions of this script are callable in actors that enable "__main__"
        portals = [await nursery.start_actor(f"primes-{i}", enable_modules=["__main__"]) for i in range(workers)]
        send_jobs, recv_jobs = trio.open_memory_channel(0)
        async with trio.open_nursery() as tasks:
            for portal in portals:
                tasks.start_soon(ask_actor, portal, recv_jobs.clone(), results)
            async with send_jobs:
                for job in enumerate(PRIMES):
                    await send_jobs.send(job)
            recv_jobs.close()
        await nursery.cancel()  # the daemons serve until cancelled
    for index, number in enumerate(PRIMES):
        print(f"{number} is prime: {results[index]}")
    print(f"{len(PRIMES)} numbers on {workers} actors in {time.perf_counter() - start:.2f}s")


if __name__ == "__main__":
    trio.run(main)

"""A self-destructing tree: one actor per CPU, then one that fails on purpose.

    python examples/parallelism/we_are_processes.py

Supervision is one-cancels-all: the failure cancels every worker, each process is
reaped (cancel request, then SIGTERM, then SIGKILL), and the error comes out of the
nursery block. Nothing is left running: the script checks, then says so.
"""

import os

import psutil
import trio

import notebook_actors as na

_working = trio.Event()  # one per actor process: set once its worker has reported


async def work_forever(worker: int) -> None:
    print(f"worker {worker} runs in pid {os.getpid()}", flush=True)
    _working.set()
    await trio.sleep_forever()


async def wait_working() -> None:
    """Return once this actor's worker has printed its line."""
    await _working.wait()


def self_destruct() -> None:
    raise RuntimeError("this actor fails on purpose")


async def main() -> None:
    workers = os.cpu_count() or 1
    async with na.open_nursery() as nursery:
        portals = [await nursery.run_in_actor(work_forever, name=f"worker-{i}", worker=i) for i in range(workers)]
        for portal in portals:  # every worker is up once it says it works
            await portal.run(wait_working)
        print(f"{workers} workers up: now one more actor fails", flush=True)
        await nursery.run_in_actor(self_destruct)


if __name__ == "__main__":
    try:
        trio.run(main)
    except na.RemoteActorError as err:
        print(f"the tree tore itself down: {err.type_name} from {err.src_uid[0]}")
    left = [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    if left:
        raise SystemExit(f"processes left behind: {[p.pid for p in left]}")
    print("Zombies Contained")

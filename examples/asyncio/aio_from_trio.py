"""Call asyncio code from trio in an infected actor: results, errors, cancellation.

- ``run_task`` returns what the asyncio coroutine returns;
- an asyncio error arrives in the parent as a ``RemoteActorError`` keeping its type;
- cancelling the trio side cancels the asyncio task (here by a trio timeout).
"""

import asyncio

import trio

import notebook_actors as tractor
from notebook_actors import to_asyncio


async def aio_sleep_and_double(x: int) -> int:
    await asyncio.sleep(0.01)  # some asyncio library call
    return 2 * x


async def aio_fail() -> None:
    await asyncio.sleep(0)
    raise ValueError("the asyncio side failed")


async def aio_forever() -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        print("asyncio task cancelled by trio", flush=True)
        raise


async def double(x: int) -> int:
    return await to_asyncio.run_task(aio_sleep_and_double, x=x)


async def fail() -> None:
    await to_asyncio.run_task(aio_fail)


async def give_up_after(seconds: float) -> str:
    with trio.move_on_after(seconds):
        await to_asyncio.run_task(aio_forever)
    return "gave up"


async def main() -> None:
    async with tractor.open_nursery() as n:
        portal = await n.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
        print("double:", await portal.run(double, x=21))
        try:
            await portal.run(fail)
        except tractor.RemoteActorError as err:
            print("error type:", err.type.__name__)
        print("timeout:", await portal.run(give_up_after, seconds=0.05))
        await portal.cancel_actor()


if __name__ == "__main__":
    trio.run(main)

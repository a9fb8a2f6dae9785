"""An infected root actor: ``run(main, infect_asyncio=True)`` makes the program's own
main loop asyncio, so trio code in it can use asyncio libraries directly."""

import asyncio

import notebook_actors as tractor
from notebook_actors import to_asyncio


async def aio_producer(to_trio, from_trio, count: int) -> None:
    to_trio.send_nowait("ready")
    for i in range(count):
        to_trio.send_nowait(i * i)
        await asyncio.sleep(0)


async def main() -> None:
    assert tractor.current_actor().is_infected_aio()
    async with to_asyncio.open_channel_from(aio_producer, count=5) as (first, chan):
        print("first:", first)
        print("squares:", [v async for v in chan])


if __name__ == "__main__":
    tractor.run(main, infect_asyncio=True)

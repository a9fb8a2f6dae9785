"""A tractor script, unchanged but for its import: topic pub-sub with ``msgpub``.

    python examples/tractor_compat/pubsub.py

One publisher generator runs in the ``streamer`` actor however many subscribers there
are; each subscriber gets only the topics it asked for, and ``get_topics()`` tells the
generator which topics somebody wants right now.
"""

from itertools import count

import trio

import notebook_actors as tractor
from notebook_actors.experimental import msgpub


@msgpub
async def numbers(get_topics):
    for i in count():
        topic = "even" if i % 2 == 0 else "odd"
        if topic in get_topics():
            yield {topic: i}
        await trio.sleep(0.001)


async def take(portal, topic: str, howmany: int, results: dict) -> None:
    got = []
    async with portal.open_stream_from(numbers, topics=[topic]) as stream:
        async for packet in stream:
            got.append(packet[topic])
            if len(got) == howmany:
                break
    results[topic] = got


async def main() -> None:
    async with tractor.open_nursery() as nursery:
        portal = await nursery.start_actor("streamer", enable_modules=[__name__])
        results: dict = {}
        async with trio.open_nursery() as tasks:
            tasks.start_soon(take, portal, "even", 5, results)
            tasks.start_soon(take, portal, "odd", 5, results)
        print("even subscriber:", all(n % 2 == 0 for n in results["even"]), len(results["even"]))
        print("odd subscriber:", all(n % 2 == 1 for n in results["odd"]), len(results["odd"]))
        await portal.cancel_actor()


if __name__ == "__main__":
    trio.run(main)

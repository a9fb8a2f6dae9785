"""A streaming service with fan-out: one price feed actor, many consumers.

The ``feed`` actor publishes ticks over one context stream. The root opens that stream
once and fans it out with ``stream.subscribe()``: every local consumer task sees every
tick, and the feed still sends each tick only once. One of those tasks relays the ticks
to a consumer in another actor over a second stream.
"""

import msgspec
import trio

import notebook_actors as tractor


class Tick(msgspec.Struct):
    symbol: str
    seq: int
    price: float


@tractor.context(payload_type=Tick)
async def price_feed(ctx: tractor.Context, symbol: str, count: int) -> int:
    """Publish ``count`` ticks, then close the stream; return how many were sent."""
    await ctx.started(Tick(symbol, -1, 100.0))
    price = 100.0
    async with ctx.open_stream() as stream:
        for seq in range(count):
            price = round(price * (1.001 if seq % 3 else 0.999), 4)
            await stream.send(Tick(symbol, seq, price))
    return count


@tractor.context
async def averager(ctx: tractor.Context) -> float:
    """A consumer in its own actor: average the prices it is sent."""
    await ctx.started()
    prices = []
    async with ctx.open_stream(msg_type=Tick) as stream:
        async for tick in stream:
            prices.append(tick.price)
    return round(sum(prices) / len(prices), 4)


async def main() -> None:
    count = 1000
    async with tractor.open_nursery() as n:
        feed = await n.start_actor("feed", enable_modules=[__name__])
        far = await n.start_actor("averager", enable_modules=[__name__])

        results: dict[str, object] = {}
        async with feed.open_context(price_feed, symbol="ACME", count=count) as (ctx, first):
            print(f"feed started at {first.price}")
            # Subscribers share a ring buffer as big as the stream's window; one that
            # falls further behind than that gets trionics.Lagged. Size it for the demo.
            async with ctx.open_stream(msg_buffer_size=count) as stream:
                ready = trio.Event()

                async def high(task_status=trio.TASK_STATUS_IGNORED) -> None:
                    async with stream.subscribe() as ticks:
                        task_status.started()
                        await ready.wait()
                        results["high"] = max([t.price async for t in ticks])

                async def low(task_status=trio.TASK_STATUS_IGNORED) -> None:
                    async with stream.subscribe() as ticks:
                        task_status.started()
                        await ready.wait()
                        results["low"] = min([t.price async for t in ticks])

                async def forward(task_status=trio.TASK_STATUS_IGNORED) -> None:
                    """Relay every tick to the consumer actor over its own stream."""
                    async with far.open_context(averager) as (actx, _):
                        async with actx.open_stream() as out, stream.subscribe() as ticks:
                            task_status.started()
                            await ready.wait()
                            async for tick in ticks:
                                await out.send(tick)
                    results["average"] = await actx.result()

                async with trio.open_nursery() as tn:
                    for consumer in (high, low, forward):
                        await tn.start(consumer)
                    ready.set()  # everyone subscribed: start reading
                    results["count"] = len([t async for t in stream])
        print(f"feed sent {await ctx.result()} ticks")
        print(f"local consumers: count={results['count']} high={results['high']} low={results['low']}")
        print(f"remote consumer average: {results['average']}")
        await feed.cancel_actor()
        await far.cancel_actor()


if __name__ == "__main__":
    trio.run(main)

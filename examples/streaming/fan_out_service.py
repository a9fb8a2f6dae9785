"""A streaming service with fan-out: one price feed actor, many consumers.

The ``feed`` actor publishes ticks over one context stream. The root opens that stream
once and fans it out with ``stream.subscribe()``: every local consumer task sees every
tick, and the feed still sends each tick only once. A second, remote consumer actor
gets its own stream from the same feed.
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


async def remote_consumer(feed_name: str, symbol: str, count: int) -> float:
    """Runs in its own actor: find the feed by name and average its prices."""
    async with tractor.wait_for_actor(feed_name) as feed:
        async with feed.open_context(price_feed, symbol=symbol, count=count) as (ctx, _):
            async with ctx.open_stream() as stream:
                prices = [tick.price async for tick in stream]
    return round(sum(prices) / len(prices), 4)


async def main() -> None:
    count = 1000
    async with tractor.open_nursery() as n:
        feed = await n.start_actor("feed", enable_modules=[__name__])
        far = await n.run_in_actor(remote_consumer, feed_name="feed", symbol="ACME", count=count)

        results: dict[str, object] = {}
        async with feed.open_context(price_feed, symbol="ACME", count=count) as (ctx, first):
            print(f"feed started at {first.price}")
            async with ctx.open_stream() as stream:
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

                async with trio.open_nursery() as tn:
                    await tn.start(high)
                    await tn.start(low)
                    ready.set()  # everyone subscribed: start reading
                    results["count"] = len([t async for t in stream])
        print(f"feed sent {await ctx.result()} ticks")
        print(f"local consumers: count={results['count']} high={results['high']} low={results['low']}")
        print(f"remote consumer average: {await far.result()}")
        await feed.cancel_actor()


if __name__ == "__main__":
    trio.run(main)

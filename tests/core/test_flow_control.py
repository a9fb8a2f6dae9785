"""Flow control between real actors: bounded buffers, backpressure, StreamOverrun,
allow_overruns, and flat memory under a million messages."""

from __future__ import annotations

import os

import psutil
import trio
import trio.testing

import notebook_actors as na
from notebook_actors.testing import RECORDER, record, wait_recorded


@na.context
async def blocked_sender(ctx, count: int) -> int:
    """After the caller's "go", send ``count`` values; record how many went out before
    the sender had to wait for credit."""
    await ctx.started()
    async with ctx.open_stream() as stream:
        assert await stream.receive() == "go"  # the caller's window arrived before this

        async def send_all() -> None:
            for i in range(count):
                await stream.send(i)

        async with trio.open_nursery() as n:
            n.start_soon(send_all)
            await trio.testing.wait_all_tasks_blocked()
            record("blocked_at", stream.sent)
    return stream.sent


@na.context
async def overrunner(ctx) -> int:
    await ctx.started()
    async with ctx.open_stream(backpressure=False) as stream:
        try:
            for i in range(1000):
                await stream.send(i)
        except na.StreamOverrun as exc:
            record("overrun", str(exc))
            return i
    return -1


@na.context
async def flooder(ctx, count: int) -> None:
    await ctx.started()
    async with ctx.open_stream(backpressure=False) as stream:
        for i in range(count):
            await stream.send(i)
        record("flooded", stream.sent)


@na.context
async def million(ctx, count: int) -> int:
    await ctx.started(os.getpid())
    async with ctx.open_stream() as stream:
        for i in range(count):
            await stream.send(i)
    return count


def test_sender_waits_when_the_receiver_buffer_is_full(reg):
    """Test that with backpressure a sender stops after exactly the receiver's
    msg_buffer_size unread messages, and goes on as the receiver reads, whose buffer
    never holds more than that."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("bp", enable_modules=[__name__, RECORDER])
            async with portal.open_context(blocked_sender, count=100) as (ctx, _):
                async with ctx.open_stream(msg_buffer_size=8) as stream:
                    await stream.send("go")
                    assert await portal.run(wait_recorded, key="blocked_at") == 8
                    got = []
                    for _ in range(100):
                        assert stream.statistics()["buffered"] <= 8
                        got.append(await stream.receive())
                    assert got == list(range(100))
                    assert stream.statistics()["window"] == 8
            assert await ctx.result() == 100
            await portal.cancel_actor()

    trio.run(main)


def test_overrun_raises_in_the_sender_without_backpressure(reg):
    """Test that a sender with backpressure=False gets StreamOverrun once the receiver's
    buffer (msg_buffer_size) is full, with a message saying what to do."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("overrun", enable_modules=[__name__, RECORDER])
            async with portal.open_context(overrunner) as (ctx, _):
                async with ctx.open_stream(msg_buffer_size=16):
                    assert await ctx.result() == 16
            message = await portal.run(wait_recorded, key="overrun")
            assert "backpressure=True" in message and "16" in message
            await portal.cancel_actor()

    trio.run(main)


def test_allow_overruns_never_limits_the_sender(reg):
    """Test that a receiver opened with allow_overruns=True lets the sender send far past
    the window without reading, and loses nothing."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("flood", enable_modules=[__name__, RECORDER])
            async with portal.open_context(flooder, count=3000) as (ctx, _):
                async with ctx.open_stream(allow_overruns=True, msg_buffer_size=4) as stream:
                    assert await portal.run(wait_recorded, key="flooded") == 3000
                    assert [v async for v in stream] == list(range(3000))
            await ctx.result()
            await portal.cancel_actor()

    trio.run(main)


def test_a_million_messages_to_a_slow_consumer_keep_memory_flat(reg):
    """Test that streaming 1,000,000 messages to a consumer that keeps pausing leaves the
    receiver's and the sender's RSS flat (growth bounded by a few tens of MB)."""
    count = 1_000_000

    async def main() -> None:
        me = psutil.Process()
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("million", enable_modules=[__name__])
            async with portal.open_context(million, count=count) as (ctx, pid):
                child = psutil.Process(pid)
                # the baseline is taken before the receiver grants any credit
                base_rx, base_tx = me.memory_info().rss, child.memory_info().rss
                samples: list[tuple[int, int]] = []
                async with ctx.open_stream() as stream:
                    expected = 0
                    async for v in stream:
                        assert v == expected
                        expected += 1
                        if v % 2_000 == 0:
                            await trio.sleep(0.001)  # a slow consumer: the sender must wait
                        if v % 50_000 == 0:
                            samples.append((me.memory_info().rss, child.memory_info().rss))
                    assert expected == count
            assert await ctx.result() == count
            await portal.cancel_actor()
        mib = 1024 * 1024
        growth_rx = max(rx for rx, _ in samples) - base_rx
        growth_tx = max(tx for _, tx in samples) - base_tx
        print(f"RSS growth over {count} messages: receiver {growth_rx / mib:.1f} MiB, sender {growth_tx / mib:.1f} MiB")
        assert growth_rx < 32 * mib, samples
        assert growth_tx < 32 * mib, samples

    trio.run(main)

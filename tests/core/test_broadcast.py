"""Broadcast receivers: in-process on trio memory channels, and over a real actor stream
with ``MsgStream.subscribe()``."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import notebook_actors as na
from notebook_actors.trionics import BroadcastReceiver, Lagged, broadcast_receiver


@na.context
async def ticker(ctx, count: int) -> str:
    await ctx.started()
    async with ctx.open_stream() as stream:
        for i in range(count):
            await stream.send(i)
    return "done"


class TestBroadcastReceiver:
    def test_every_subscriber_sees_every_value(self):
        """Test that each subscriber (and the first receiver) sees every value sent
        after it subscribed, then EndOfChannel."""

        async def main() -> None:
            tx, rx = trio.open_memory_channel[int](0)
            first = broadcast_receiver(rx, max_buffer_size=16)
            assert isinstance(first, BroadcastReceiver)
            seen: dict[str, list[int]] = {}

            async def consume(name: str, sub: BroadcastReceiver) -> None:
                seen[name] = [v async for v in sub]

            async def subscriber(name: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
                async with first.subscribe() as sub:
                    task_status.started()
                    await consume(name, sub)

            async with trio.open_nursery() as n:
                for name in "abc":
                    await n.start(subscriber, name)
                n.start_soon(consume, "first", first)
                async with tx:
                    for i in range(100):
                        await tx.send(i)
            assert seen == {name: list(range(100)) for name in ["a", "b", "c", "first"]}

        trio.run(main)

    def test_a_subscriber_that_falls_behind_gets_lagged_and_skips_ahead(self):
        """Test that a subscriber more than max_buffer_size values behind gets Lagged
        with the number skipped, then goes on from the oldest value kept."""

        async def main() -> None:
            tx, rx = trio.open_memory_channel[int](100)
            fast = broadcast_receiver(rx, max_buffer_size=4)
            async with fast.subscribe() as slow:
                for i in range(10):
                    tx.send_nowait(i)
                assert [await fast.receive() for _ in range(10)] == list(range(10))
                assert slow.statistics()["lag"] == 4
                with pytest.raises(Lagged, match="fell 6 values behind") as info:
                    await slow.receive()
                assert info.value.skipped == 6
                assert isinstance(info.value, trio.TooSlowError)
                assert [await slow.receive() for _ in range(4)] == [6, 7, 8, 9]
                tx.send_nowait(10)
                assert await slow.receive() == 10  # the slow one pulls this time
                assert await fast.receive() == 10

        trio.run(main)

    def test_a_cancelled_puller_loses_nothing(self):
        """Test that cancelling the task pulling from the source hands the pull to a
        waiting subscriber, and no value is lost."""

        async def main() -> None:
            tx, rx = trio.open_memory_channel[int](10)
            first = broadcast_receiver(rx, max_buffer_size=8)
            async with first.subscribe() as other:
                got: list[int] = []

                async def wait_one() -> None:
                    got.append(await other.receive())

                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as n:
                        n.start_soon(first.receive)  # becomes the puller
                        await trio.testing.wait_all_tasks_blocked()
                        n.start_soon(wait_one)  # parks behind the puller
                        await trio.testing.wait_all_tasks_blocked()
                        scope.cancel()
                async with trio.open_nursery() as n:
                    n.start_soon(wait_one)
                    await trio.testing.wait_all_tasks_blocked()
                    await tx.send(42)
                assert got == [42]
                assert await first.receive() == 42

        trio.run(main)

    def test_closing(self):
        """Test that a closed subscriber raises ClosedResourceError, and closing the first
        receiver closes the source channel."""

        async def main() -> None:
            tx, rx = trio.open_memory_channel[int](1)
            first = broadcast_receiver(rx, max_buffer_size=2)
            async with first.subscribe() as sub:
                pass
            with pytest.raises(trio.ClosedResourceError):
                await sub.receive()
            await first.aclose()
            with pytest.raises(trio.BrokenResourceError):
                tx.send_nowait(1)
            with pytest.raises(ValueError, match="at least 1"):
                broadcast_receiver(rx, max_buffer_size=0)

        trio.run(main)


def test_stream_subscribe_fans_out_to_local_tasks(reg):
    """Test that stream.subscribe() lets several local tasks each receive every message
    of one actor stream, and the stream's own receive is one of them."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("ticker", enable_modules=[__name__])
            seen: dict[str, list[int]] = {}
            async with portal.open_context(ticker, count=500) as (ctx, _):
                async with ctx.open_stream(msg_buffer_size=600) as stream:
                    everyone_in = trio.Event()

                    async def subscriber(name: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
                        async with stream.subscribe() as sub:
                            task_status.started()
                            await everyone_in.wait()
                            seen[name] = [v async for v in sub]

                    async with trio.open_nursery() as tn:
                        for i in range(3):
                            await tn.start(subscriber, f"sub{i}")
                        everyone_in.set()
                        seen["stream"] = [v async for v in stream]
            assert await ctx.result() == "done"
            assert seen == {name: list(range(500)) for name in ["sub0", "sub1", "sub2", "stream"]}
            await portal.cancel_actor()

    trio.run(main)


def test_stream_subscriber_that_lags_gets_lagged(reg):
    """Test that a subscriber of an actor stream that does not read while others do
    gets Lagged, and the others are not held back."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("lagger", enable_modules=[__name__])
            async with portal.open_context(ticker, count=100) as (ctx, _):
                async with ctx.open_stream(msg_buffer_size=10) as stream:
                    async with stream.subscribe() as idle:
                        assert [v async for v in stream] == list(range(100))
                        with pytest.raises(Lagged) as info:
                            await idle.receive()
                        assert info.value.skipped == 90
                        assert [v async for v in idle] == list(range(90, 100))
            await portal.cancel_actor()

    trio.run(main)

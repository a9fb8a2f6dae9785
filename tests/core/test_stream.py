"""Message streams between real actors: both directions, multiplexing, one-way streams,
and clean ends in every order."""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing

import notebook_actors as na
from notebook_actors.testing import RECORDER, record, wait_recorded

# -- endpoints ---------------------------------------------------------------------------


@na.context
async def echo(ctx) -> int:
    await ctx.started()
    n = 0
    async with ctx.open_stream() as stream:
        async for msg in stream:
            await stream.send(msg)
            n += 1
    return n


@na.context
async def talk_both_ways(ctx, count: int) -> list[int]:
    """Send ``count`` values while receiving the caller's, in two tasks."""
    await ctx.started()
    got: list[int] = []
    async with ctx.open_stream() as stream:

        async def sender() -> None:
            for i in range(count):
                await stream.send(-i)

        async with trio.open_nursery() as n:
            n.start_soon(sender)
            async for msg in stream:
                got.append(msg)
    return got


@na.context
async def send_then_close(ctx, count: int) -> str:
    await ctx.started()
    async with ctx.open_stream() as stream:
        for i in range(count):
            await stream.send(i)
    return "sent all"


@na.context
async def send_forever(ctx, key: str) -> str:
    await ctx.started()
    i = 0
    async with ctx.open_stream() as stream:
        while True:
            await stream.send(i)
            i += 1
    record(key, i)
    return "receiver went away"


@na.context
async def close_then_wait(ctx) -> str:
    """Close our end at once, then keep serving until the caller is done."""
    await ctx.started()
    async with ctx.open_stream():
        pass
    return "closed first"


@na.context
async def fail_mid_stream(ctx) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        await stream.send("one")
        raise ValueError("broke mid-stream")


@na.context
async def cancel_mid_stream(ctx) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        await stream.send("one")
        await ctx.cancel()
        await trio.sleep_forever()


@na.context
async def stream_until_cancelled(ctx, key: str) -> None:
    await ctx.started(os.getpid())
    try:
        async with ctx.open_stream() as stream:
            async for msg in stream:
                await stream.send(msg)
    finally:
        record(key, "cancelled" if ctx.canceller else "ended")


@na.context
async def late_opener(ctx) -> list[int]:
    """Open our stream only after the caller already sent (credit for a late side)."""
    await ctx.started()
    await wait_recorded("open")
    got = []
    async with ctx.open_stream() as stream:
        async for msg in stream:
            got.append(msg)
    return got


async def counter(start: int, stop: int):
    for i in range(start, stop):
        yield i


async def counter_recording(key: str):
    try:
        i = 0
        while True:
            yield i
            i += 1
    finally:
        record(key, "generator closed")


async def failing_gen():
    yield 1
    raise OSError("generator broke")


@na.stream
async def legacy(ctx, count: int) -> None:
    for i in range(count):
        await ctx.send_yield(i * 10)


# -- tests -------------------------------------------------------------------------------


def test_bidirectional_stream_both_directions_at_once(reg):
    """Test that both sides can send and receive concurrently on one stream."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("both", enable_modules=[__name__])
            async with portal.open_context(talk_both_ways, count=2000) as (ctx, _):
                got: list[int] = []
                async with ctx.open_stream(msg_buffer_size=16) as stream:

                    async def sender() -> None:
                        for i in range(2000):
                            await stream.send(i)

                    async def receiver() -> None:
                        for _ in range(2000):
                            got.append(await stream.receive())

                    async with trio.open_nursery() as tn:
                        tn.start_soon(sender)
                        tn.start_soon(receiver)
                assert got == [-i for i in range(2000)]
            assert await ctx.result() == list(range(2000))
            await portal.cancel_actor()

    trio.run(main)


def test_several_streams_multiplexed_over_one_channel(reg):
    """Test that many contexts and one-way streams run at once over one portal."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("mux", enable_modules=[__name__])
            results: dict[str, object] = {}

            async def echo_user(i: int) -> None:
                async with portal.open_context(echo) as (ctx, _):
                    async with ctx.open_stream(msg_buffer_size=4) as stream:
                        for j in range(300):
                            await stream.send((i, j))
                            assert await stream.receive() == [i, j]
                results[f"ctx{i}"] = await ctx.result()

            async def gen_user(i: int) -> None:
                async with portal.open_stream_from(counter, start=i, stop=i + 500) as stream:
                    results[f"gen{i}"] = [v async for v in stream]

            async with trio.open_nursery() as tn:
                for i in range(4):
                    tn.start_soon(echo_user, i)
                    tn.start_soon(gen_user, i * 1000)
            for i in range(4):
                assert results[f"ctx{i}"] == 300
                assert results[f"gen{i * 1000}"] == list(range(i * 1000, i * 1000 + 500))
            assert not portal.channel.calls  # every call is cleaned up
            await portal.cancel_actor()

    trio.run(main)


def test_open_stream_from_async_generator_and_legacy_stream(reg):
    """Test that open_stream_from streams an async generator's values and a legacy
    @stream function's send_yield values, and ends cleanly."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("gens", enable_modules=[__name__])
            async with portal.open_stream_from(counter, start=3, stop=8) as stream:
                assert [v async for v in stream] == [3, 4, 5, 6, 7]
            async with portal.open_stream_from(legacy, count=4) as stream:
                with pytest.raises(TypeError, match="receive-only"):
                    await stream.send(1)
                assert [v async for v in stream] == [0, 10, 20, 30]
            await portal.cancel_actor()

    trio.run(main)


def test_stream_decorator_needs_ctx_and_kinds_are_checked():
    """Test that @stream without a ctx parameter raises TypeError saying so, and that
    open_stream_from refuses a @context function."""
    with pytest.raises(TypeError, match=r"no_ctx must be `ctx: tractor\.Context`"):

        @na.stream
        async def no_ctx(count: int) -> None:
            pass

    class FakePortal(na.Portal):
        def __init__(self) -> None:
            pass

    async def main() -> None:
        with pytest.raises(TypeError, match="open_context"):
            async with FakePortal().open_stream_from(echo):
                pass

    trio.run(main)


def test_leaving_open_stream_from_early_cancels_the_generator(reg):
    """Test that leaving open_stream_from before the end cancels the remote generator
    without an error, and that a generator's error is raised boxed."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("early", enable_modules=[__name__, RECORDER])
            async with portal.open_stream_from(counter_recording, key="gen") as stream:
                async for v in stream:
                    if v == 100:
                        break
            assert await portal.run(wait_recorded, key="gen") == "generator closed"
            with pytest.raises(na.RemoteActorError, match="generator broke") as info:
                async with portal.open_stream_from(failing_gen) as stream:
                    assert await stream.receive() == 1
                    await stream.receive()
            assert info.value.type is OSError
            await portal.cancel_actor()

    trio.run(main)


def test_sender_closes_first_then_result_is_delivered(reg):
    """Test that when the callee closes its stream, the caller gets every message sent
    before, then iteration ends, then the context's result."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("closer", enable_modules=[__name__])
            async with portal.open_context(send_then_close, count=1000) as (ctx, _):
                async with ctx.open_stream(msg_buffer_size=8) as stream:
                    assert [v async for v in stream] == list(range(1000))
                    with pytest.raises(trio.EndOfChannel):
                        await stream.receive()
                assert await ctx.result() == "sent all"
            await portal.cancel_actor()

    trio.run(main)


def test_receiver_closes_first_ends_the_sender_cleanly(reg):
    """Test that when the caller closes its end, an endless sender's send raises
    BrokenResourceError, which ends its open_stream block cleanly, so the callee
    returns normally."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("endless", enable_modules=[__name__, RECORDER])
            async with portal.open_context(send_forever, key="endless") as (ctx, _):
                async with ctx.open_stream(msg_buffer_size=4) as stream:
                    async for v in stream:
                        if v == 50:
                            break
            assert await ctx.result() == "receiver went away"
            assert await portal.run(wait_recorded, key="endless") >= 51
            await portal.cancel_actor()

    trio.run(main)


def test_sending_after_the_peer_closed_raises_broken_resource(reg):
    """Test that send() after the other side closed its end raises BrokenResourceError,
    receive() ends, and send() on our own closed stream raises ClosedResourceError."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("shut", enable_modules=[__name__])
            async with portal.open_context(close_then_wait) as (ctx, _):
                async with ctx.open_stream() as stream:
                    with pytest.raises(trio.EndOfChannel):
                        await stream.receive()  # the callee's Stop has arrived
                    with pytest.raises(trio.BrokenResourceError, match="closed its end"):
                        await stream.send("anyone?")
                with pytest.raises(trio.ClosedResourceError, match="this side closed"):
                    await stream.send("again")
            assert await ctx.result() == "closed first"
            await portal.cancel_actor()

    trio.run(main)


def test_callee_error_mid_stream_reaches_the_receiver(reg):
    """Test that a callee failing mid-stream raises its error boxed from the caller's
    receive (after the messages sent before it) and from the block's end."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("midfail", enable_modules=[__name__])
            with pytest.raises(na.RemoteActorError, match="broke mid-stream") as info:
                async with portal.open_context(fail_mid_stream) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        assert await stream.receive() == "one"
                        await stream.receive()
            assert info.value.type is ValueError
            await portal.cancel_actor()

    trio.run(main)


def test_caller_error_mid_stream_cancels_the_callee(reg):
    """Test that an error in the caller mid-stream cancels the callee and is raised as
    itself."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("callerfail", enable_modules=[__name__, RECORDER])
            with pytest.raises(LookupError):
                async with portal.open_context(stream_until_cancelled, key="callerfail") as (ctx, _):
                    async with ctx.open_stream() as stream:
                        await stream.send(1)
                        assert await stream.receive() == 1
                        raise LookupError("caller broke")
            assert await portal.run(wait_recorded, key="callerfail") == "cancelled"
            await portal.cancel_actor()

    trio.run(main)


def test_either_side_cancelled_mid_stream(reg):
    """Test that the callee cancelling mid-stream raises ContextCancelled from the
    caller's receive, and the caller's scope being cancelled cancels the callee."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("cancels", enable_modules=[__name__, RECORDER])
            with pytest.raises(na.ContextCancelled) as info:
                async with portal.open_context(cancel_mid_stream) as (ctx, _):
                    async with ctx.open_stream() as stream:
                        assert await stream.receive() == "one"
                        await stream.receive()
            assert info.value.canceller == portal.channel.uid

            with trio.CancelScope() as scope:
                async with portal.open_context(stream_until_cancelled, key="scope") as (ctx, _):
                    async with ctx.open_stream() as stream:
                        await stream.send("ping")
                        assert await stream.receive() == "ping"
                        scope.cancel()
                        await stream.receive()
            assert scope.cancelled_caught
            assert await portal.run(wait_recorded, key="scope") == "cancelled"

            async with portal.open_context(stream_until_cancelled, key="own") as (ctx, _):
                async with ctx.open_stream() as stream:
                    await ctx.cancel()
                    assert [v async for v in stream] == []  # our own cancel ends iteration
                    with pytest.raises(trio.ClosedResourceError, match="cancelled"):
                        await stream.send(1)
            assert await ctx.result() is None
            await portal.cancel_actor()

    trio.run(main)


def test_peer_killed_mid_stream_raises_transport_closed(reg):
    """Test that SIGKILLing the callee's process mid-stream raises TransportClosed from
    the caller's receive and send instead of hanging, and the nursery reports the crash."""

    async def main() -> None:
        with trio.fail_after(60):
            with pytest.raises(BaseException) as info:
                async with na.open_nursery(**reg) as n:
                    portal = await n.start_actor("victim", enable_modules=[__name__])
                    async with portal.open_context(stream_until_cancelled, key="kill") as (ctx, pid):
                        async with ctx.open_stream() as stream:
                            await stream.send(1)
                            assert await stream.receive() == 1
                            os.kill(pid, signal.SIGKILL)
                            with pytest.raises(na.TransportClosed):
                                await stream.receive()
                            with pytest.raises(na.TransportClosed):
                                await stream.send(2)
                        with pytest.raises(na.TransportClosed):
                            await ctx.result()
                        raise KeyError("leave")
            errors = info.value.exceptions if isinstance(info.value, BaseExceptionGroup) else [info.value]
            assert any(isinstance(e, na.ActorCrashed) for e in errors) or any(
                isinstance(e, KeyError) for e in errors
            ), errors

    trio.run(main)


def test_stream_opened_late_on_one_side_gets_its_credit(reg):
    """Test that a side sending before its peer opened the stream waits for the peer's
    window (even with backpressure=False) and loses nothing."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("late", enable_modules=[__name__, RECORDER])
            async with portal.open_context(late_opener) as (ctx, _):
                async with ctx.open_stream(backpressure=False) as stream:

                    async def sender() -> None:
                        for i in range(20):
                            await stream.send(i)

                    async with trio.open_nursery() as tn:
                        tn.start_soon(sender)
                        await trio.testing.wait_all_tasks_blocked()
                        assert stream.statistics()["sent"] == 0  # no window granted yet
                        await portal.run(record, key="open", value=True)
            assert await ctx.result() == list(range(20))
            await portal.cancel_actor()

    trio.run(main)


@na.context
async def send_two_then_record(ctx, key: str) -> None:
    await ctx.started()
    async with ctx.open_stream() as stream:
        await stream.send("first")
        await stream.send("second")
        record(key, True)
        async for msg in stream:
            await stream.send(msg)


def test_a_cancelled_receive_or_send_loses_and_sends_nothing(reg):
    """Test that a receive cancelled while a message is buffered leaves the message for
    the next receive, and a cancelled send sends nothing (as trio's memory channels)."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("nolose", enable_modules=[__name__, RECORDER])
            async with portal.open_context(send_two_then_record, key="two") as (ctx, _):
                async with ctx.open_stream() as stream:
                    # the reply to this call travels behind both messages
                    assert await portal.run(wait_recorded, key="two") is True
                    assert stream.statistics()["buffered"] == 2
                    with trio.CancelScope() as scope:
                        scope.cancel()
                        await stream.receive()
                    assert scope.cancelled_caught
                    assert await stream.receive() == "first"
                    assert await stream.receive() == "second"
                    with trio.CancelScope() as scope:
                        scope.cancel()
                        await stream.send("never")
                    assert scope.cancelled_caught and stream.statistics()["sent"] == 0
                    await stream.send("echoed")
                    assert await stream.receive() == "echoed"
            await portal.cancel_actor()

    trio.run(main)


@na.context
async def relay(ctx, count: int) -> int:
    """In a middle actor: open a leaf actor's stream and relay it, doubled, upward."""
    async with na.open_nursery() as n:
        leaf = await n.start_actor("leaf", enable_modules=[__name__])
        async with leaf.open_context(send_then_close, count=count) as (leaf_ctx, _):
            await ctx.started(leaf.channel.uid[0])
            async with leaf_ctx.open_stream() as down, ctx.open_stream() as up:
                async for v in down:
                    await up.send(v * 2)
        await leaf.cancel_actor()
    return count


def test_streams_relay_through_a_nested_actor(reg):
    """Test that an actor can relay a grandchild's stream to its parent, with every
    message and both results arriving."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            mid = await n.start_actor("mid", enable_modules=[__name__])
            async with mid.open_context(relay, count=2000) as (ctx, leaf_name):
                assert leaf_name == "leaf"
                async with ctx.open_stream(msg_buffer_size=32) as stream:
                    assert [v async for v in stream] == [2 * i for i in range(2000)]
            assert await ctx.result() == 2000
            await mid.cancel_actor()

    trio.run(main)


def test_caller_error_caught_inside_open_context_still_ends_the_callee(reg):
    """Test that when the caller's stream block fails but the error is caught inside
    open_context, the callee's stream loop still ends (no hang) and its result arrives."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("caught", enable_modules=[__name__, RECORDER])
            async with portal.open_context(stream_until_cancelled, key="caught") as (ctx, _):
                with pytest.raises(LookupError):
                    async with ctx.open_stream() as stream:
                        await stream.send(1)
                        assert await stream.receive() == 1
                        raise LookupError("caller broke, and knows it")
            assert await ctx.result() is None
            assert await portal.run(wait_recorded, key="caught") == "ended"
            await portal.cancel_actor()

    trio.run(main)

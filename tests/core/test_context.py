"""Contexts between real actors: open_context, started, result, cancel from either side."""

from __future__ import annotations

import threading

import pytest
import trio

import notebook_actors as na
from notebook_actors.testing import RECORDER, record, recorded, wait_recorded


@na.context
async def greeter(ctx, name: str) -> str:
    await ctx.started(f"hello {name}")
    return f"bye {name}"


@na.context
async def started_twice(ctx) -> str:
    await ctx.started(1)
    try:
        await ctx.started(2)
    except RuntimeError as exc:
        return str(exc)
    return "no error"


@na.context
async def unencodable_first(ctx) -> str:
    try:
        await ctx.started(threading.Lock())
    except TypeError as exc:
        await ctx.started("recovered")
        return str(exc)
    return "no error"


@na.context
async def stream_before_started(ctx) -> str:
    try:
        ctx.open_stream()
    except RuntimeError as exc:
        await ctx.started()
        return str(exc)
    return "no error"


@na.context
async def never_started(ctx) -> None:
    return None


@na.context
async def fails_before_started(ctx) -> None:
    raise KeyError("no such thing")


@na.context
async def fails_after_started(ctx) -> None:
    await ctx.started()
    raise ValueError("callee broke")


@na.context
async def cancels_itself(ctx) -> None:
    await ctx.started()
    await ctx.cancel()
    await trio.sleep_forever()


@na.context
async def sleeps_until_cancelled(ctx, key: str) -> None:
    try:  # started() is inside: the cancel may land while it is still sending
        await ctx.started()
        await trio.sleep_forever()
    finally:
        canceller = ctx.canceller
        record(key, list(canceller) if canceller else None)


@na.context
async def returns_at_once(ctx) -> int:
    await ctx.started()
    return 7


@na.context
async def echo(ctx, tag: str) -> int:
    await ctx.started(tag)
    n = 0
    async with ctx.open_stream() as stream:
        async for msg in stream:
            await stream.send([tag, msg])
            n += 1
    return n


def test_open_context_yields_first_and_result(reg):
    """Test that open_context yields (ctx, first) and the block's exit keeps the result."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("ctxd", enable_modules=[__name__])
            async with portal.open_context(greeter, name="ann") as (ctx, first):
                assert first == "hello ann"
                assert ctx.side == "caller"
                assert ctx.chan is portal.channel
            assert await ctx.result() == "bye ann"
            assert await ctx.result() == "bye ann"  # cached, safe to ask again
            await portal.cancel_actor()

    trio.run(main)


def test_started_misuse_is_reported_in_the_callee(reg):
    """Test that started() twice raises RuntimeError, an unencodable started value raises
    TypeError in the sender (which may retry), and open_stream before started raises
    RuntimeError - all inside the callee, which keeps running."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("misuse", enable_modules=[__name__])
            async with portal.open_context(started_twice) as (ctx, first):
                assert first == 1
            assert "already called" in await ctx.result()
            async with portal.open_context(unencodable_first) as (ctx, first):
                assert first == "recovered"
            msg = await ctx.result()
            assert "the value passed to ctx.started() of type lock cannot be sent" in msg
            async with portal.open_context(stream_before_started) as (ctx, _):
                pass
            assert "call `await ctx.started()` first" in await ctx.result()
            await portal.cancel_actor()

    trio.run(main)


def test_context_that_never_starts_or_fails_early(reg):
    """Test that a context function returning without started(), or failing before it,
    raises RemoteActorError from open_context itself."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("early", enable_modules=[__name__])
            with pytest.raises(na.RemoteActorError, match=r"without calling `await ctx.started\(\)`") as info:
                async with portal.open_context(never_started):
                    pytest.fail("the body must not run")
            assert info.value.type is RuntimeError
            with pytest.raises(na.RemoteActorError, match="no such thing") as info:
                async with portal.open_context(fails_before_started):
                    pytest.fail("the body must not run")
            assert info.value.type is KeyError
            assert await portal.run_from_ns("self", "ping") == "pong"
            await portal.cancel_actor()

    trio.run(main)


def test_callee_error_is_raised_when_the_block_ends(reg):
    """Test that a callee failing after started() raises its error boxed from the end
    of the open_context block, and from ctx.result()."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("failer", enable_modules=[__name__])
            with pytest.raises(na.RemoteActorError, match="callee broke") as info:
                async with portal.open_context(fails_after_started) as (ctx, _):
                    pass
            assert info.value.type is ValueError
            with pytest.raises(na.RemoteActorError, match="callee broke"):
                await ctx.result()
            await portal.cancel_actor()

    trio.run(main)


def test_callee_error_interrupts_a_waiting_block(reg):
    """Test that a callee failing while the caller's block waits on something else
    cancels that block, which then raises the callee's error (it does not hang)."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("interrupter", enable_modules=[__name__])
            with pytest.raises(na.RemoteActorError, match="callee broke") as info:
                async with portal.open_context(fails_after_started):
                    with trio.fail_after(10):  # hang guard
                        await trio.sleep_forever()
            assert info.value.type is ValueError
            await portal.cancel_actor()

    trio.run(main)


def test_callee_cancel_raises_context_cancelled_in_caller(reg):
    """Test that ctx.cancel() in the callee raises ContextCancelled in the caller naming
    the callee as canceller, with the remote traceback text in msgdata."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("selfcancel", enable_modules=[__name__])
            with pytest.raises(na.ContextCancelled) as info:
                async with portal.open_context(cancels_itself) as (ctx, _):
                    pass
            err = info.value
            assert err.canceller == portal.channel.uid
            assert ctx.canceller == portal.channel.uid
            assert err.msgdata["tb_str"]
            assert err.msgdata["canceller"] == portal.channel.uid
            assert err.src_uid == portal.channel.uid
            await portal.cancel_actor()

    trio.run(main)


def test_caller_cancel_is_seen_by_callee_and_result_is_none(reg):
    """Test that ctx.cancel() in the caller cancels the callee, which sees the caller as
    canceller, and that ctx.result() after our own cancel returns None."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("cancelled", enable_modules=[__name__, RECORDER])
            me = na.current_actor().uid
            async with portal.open_context(sleeps_until_cancelled, key="caller-cancel") as (ctx, _):
                await ctx.cancel()
                assert ctx.cancel_called
            assert await ctx.result() is None
            assert ctx.canceller == me
            assert tuple(await portal.run(recorded, key="caller-cancel")) == me
            await portal.cancel_actor()

    trio.run(main)


def test_result_after_cancel_of_a_finished_context_keeps_the_value(reg):
    """Test that cancelling a context that already returned is a no-op: result() stays."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("finished", enable_modules=[__name__])
            async with portal.open_context(returns_at_once) as (ctx, _):
                assert await ctx.result() == 7
                await ctx.cancel()
                assert await ctx.result() == 7
            await portal.cancel_actor()

    trio.run(main)


def test_body_error_cancels_callee_and_wins(reg):
    """Test that an error in the open_context body cancels the callee and is raised
    as itself from the block."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("bodyfail", enable_modules=[__name__, RECORDER])
            with pytest.raises(ZeroDivisionError):
                async with portal.open_context(sleeps_until_cancelled, key="body-error"):
                    raise ZeroDivisionError
            assert tuple(await portal.run(wait_recorded, key="body-error")) == na.current_actor().uid
            await portal.cancel_actor()

    trio.run(main)


def test_caller_cancelled_by_its_scope_cancels_callee(reg):
    """Test that cancelling the caller's scope inside open_context cancels the callee."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("scoped", enable_modules=[__name__, RECORDER])
            with trio.CancelScope() as scope:
                async with portal.open_context(sleeps_until_cancelled, key="scope") as (_ctx, _):
                    scope.cancel()
                    await trio.sleep_forever()
            assert scope.cancelled_caught
            assert tuple(await portal.run(wait_recorded, key="scope")) == na.current_actor().uid
            await portal.cancel_actor()

    trio.run(main)


def test_context_misuse_in_the_caller(reg):
    """Test that calling a @context with portal.run, or ctx.result()/started() on the
    wrong side, raises a clear error."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("wrongside", enable_modules=[__name__])
            with pytest.raises(TypeError, match="open_context"):
                await portal.run(greeter, name="x")
            async with portal.open_context(greeter, name="x") as (ctx, _):
                with pytest.raises(RuntimeError, match="called by the context function"):
                    await ctx.started()
            await portal.cancel_actor()

    trio.run(main)


def test_contexts_to_several_actors_at_once(reg):
    """Test that one task can hold streaming contexts to several actors at the same time."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portals = [await n.start_actor(f"peer{i}", enable_modules=[__name__]) for i in range(3)]
            async with (
                portals[0].open_context(echo, tag="a") as (c0, f0),
                portals[1].open_context(echo, tag="b") as (c1, f1),
                portals[2].open_context(echo, tag="c") as (c2, f2),
                c0.open_stream() as s0,
                c1.open_stream() as s1,
                c2.open_stream() as s2,
            ):
                assert (f0, f1, f2) == ("a", "b", "c")
                for i in range(20):
                    for s in (s0, s1, s2):
                        await s.send(i)
                    assert [await s.receive() for s in (s0, s1, s2)] == [["a", i], ["b", i], ["c", i]]
            assert [await c.result() for c in (c0, c1, c2)] == [20, 20, 20]
            assert {c.chan.uid for c in (c0, c1, c2)} == {p.channel.uid for p in portals}
            for p in portals:
                await p.cancel_actor()

    trio.run(main)


@na.context
async def streams_to_nobody(ctx) -> int:
    await ctx.started()
    async with ctx.open_stream() as stream:
        for i in range(1000):
            await stream.send(i)
    return stream.sent


def test_result_without_opening_the_stream_drops_the_callees_messages(reg):
    """Test that awaiting ctx.result() without ever opening our stream lets the callee
    stream to nobody without waiting for a reader (its messages are dropped) and gives
    its result (tractor's rule), and that opening the stream afterwards is refused with
    a clear error."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("nobody", enable_modules=[__name__])
            async with portal.open_context(streams_to_nobody) as (ctx, _):
                assert await ctx.result() == 1000
                with pytest.raises(RuntimeError, match="open the stream first"):
                    ctx.open_stream()
            await portal.cancel_actor()

    trio.run(main)

"""asyncio interop: trio as a guest on asyncio (run_as_asyncio_guest, start_guest_run,
start_guest_actor), infected actors, run_task and open_channel_from."""

from __future__ import annotations

import asyncio
import os
import traceback
from collections import Counter

import pytest
import trio
import trio.lowlevel

import notebook_actors as na
from notebook_actors import testing, to_asyncio

HANG_GUARD = 60


def other_asyncio_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def square(x: int) -> int:
    return x * x


def whoami() -> dict:
    actor = na.current_actor()
    return {"pid": os.getpid(), "infected": actor.is_infected_aio(), "guest": to_asyncio.is_guest_mode()}


# -- guest mode on a running asyncio loop ---------------------------------------------------


class TestRunAsAsyncioGuest:
    def test_returns_result_in_guest_mode(self):
        """Test that run_as_asyncio_guest returns trio_main's result and is_guest_mode() is
        true only while it runs."""

        async def main(x):
            await trio.lowlevel.checkpoint()
            return x, to_asyncio.is_guest_mode(), asyncio.get_running_loop() is not None

        assert not to_asyncio.is_guest_mode()
        assert to_asyncio.run_as_asyncio_guest(main, 3) == (3, True, True)
        assert not to_asyncio.is_guest_mode()

    def test_raises_trio_error(self):
        """Test that an error in trio_main is raised from run_as_asyncio_guest."""

        async def main():
            await trio.lowlevel.checkpoint()
            raise KeyError("from trio")

        with pytest.raises(KeyError, match="from trio"):
            to_asyncio.run_as_asyncio_guest(main)


class TestStartGuestRun:
    def test_cancel_and_wait(self):
        """Test that GuestRun.cancel() ends a trio run that would sleep forever, wait()
        returns None, and the trio task saw the cancellation."""
        seen = []

        async def forever(started: asyncio.Event):
            started.set()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                seen.append("cancelled")
                raise

        async def main():
            started = asyncio.Event()
            run = to_asyncio.start_guest_run(forever, started)
            assert not run.done()
            await started.wait()
            run.cancel()
            assert await asyncio.wait_for(run.wait(), HANG_GUARD) is None
            assert run.done()
            return other_asyncio_tasks()

        assert asyncio.run(main()) == []
        assert seen == ["cancelled"]

    def test_cancel_before_trio_starts(self):
        """Test that cancel() right after start_guest_run stops the run before its main
        function gets anywhere."""
        reached = []

        async def main_fn():
            await trio.lowlevel.checkpoint()  # the first checkpoint sees the cancel
            reached.append(True)

        async def main():
            run = to_asyncio.start_guest_run(main_fn)
            run.cancel()
            return await asyncio.wait_for(run.wait(), HANG_GUARD)

        assert asyncio.run(main()) is None
        assert reached == []

    def test_done_callback_gets_outcome(self):
        """Test that done_callback receives the run's outcome on the host loop."""
        got = []

        async def main_fn():
            await trio.lowlevel.checkpoint()
            return "ok"

        async def main():
            run = to_asyncio.start_guest_run(main_fn, done_callback=got.append)
            return await run.wait()

        assert asyncio.run(main()) == "ok"
        assert [o.unwrap() for o in got] == ["ok"]

    def test_second_guest_run_on_same_thread_refused(self):
        """Test that a second start_guest_run on a thread that hosts one raises RuntimeError."""

        async def main():
            run = to_asyncio.start_guest_run(trio.sleep_forever)
            try:
                with pytest.raises(RuntimeError, match="already active on this thread"):
                    to_asyncio.start_guest_run(trio.sleep_forever)
            finally:
                await run.aclose()

        asyncio.run(main())


async def spawn_and_call() -> tuple[int, bool]:
    async with na.open_nursery() as an:
        portal = await an.start_actor("sq", enable_modules=[__name__])
        result = await portal.run(square, x=7)
        await portal.cancel_actor()
    return result, na.current_actor().is_infected_aio()


class TestStartGuestActor:
    def test_spawn_call_shutdown_from_plain_asyncio(self, reg):
        """Test that a plain asyncio program can start the actor runtime as a guest, spawn
        and call a child through it, and shut down with no asyncio task left over."""

        async def main():
            async with to_asyncio.start_guest_actor(name="host", **reg) as ga:
                assert ga.actor.name == "host"
                result = await asyncio.wait_for(ga.run(spawn_and_call), HANG_GUARD)
            assert ga.guest.done()
            return result, other_asyncio_tasks()

        assert asyncio.run(main()) == ((49, True), [])
        assert not to_asyncio.is_guest_mode()

    def test_aclose_cancels_a_live_tree(self, reg):
        """Test that GuestActor.aclose() cancels a tree whose daemon child still runs and
        returns only after that child process is gone."""

        async def child_in_open_nursery(started: asyncio.Future):
            async with na.open_nursery() as an:
                portal = await an.start_actor("sq", enable_modules=[__name__])
                started.set_result((await portal.run(whoami))["pid"])
                await trio.sleep_forever()

        async def main():
            ga = to_asyncio.start_guest_actor(**reg)
            await ga.wait_started()
            started = asyncio.get_running_loop().create_future()
            call = asyncio.create_task(ga.run(child_in_open_nursery, started))
            pid = await asyncio.wait_for(started, HANG_GUARD)
            assert testing.alive(pid)
            await asyncio.wait_for(ga.aclose(), HANG_GUARD)
            alive_after = testing.alive(pid)
            with pytest.raises(RuntimeError, match="shut down"):
                await call
            return alive_after

        assert asyncio.run(main()) is False

    def test_cancelling_the_asyncio_caller_cancels_the_trio_task(self, reg):
        """Test that cancelling the asyncio task awaiting GuestActor.run() cancels the trio
        task, waits for it to unwind, then raises CancelledError."""
        events = []

        async def trio_side(started: asyncio.Event):
            started.set()
            try:
                await trio.sleep_forever()
            finally:
                events.append("trio unwound")

        async def main():
            async with to_asyncio.start_guest_actor(**reg) as ga:
                started = asyncio.Event()
                call = asyncio.create_task(ga.run(trio_side, started))
                await started.wait()
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                events.append("asyncio saw CancelledError")
                assert await ga.run(trio.to_thread.run_sync, square, 3) == 9  # still serving

        asyncio.run(main())
        assert events == ["trio unwound", "asyncio saw CancelledError"]

    def test_trio_error_reaches_asyncio_caller(self, reg):
        """Test that an error raised by the trio function is raised from GuestActor.run()
        and leaves the runtime serving."""

        async def fails():
            await trio.lowlevel.checkpoint()
            raise ZeroDivisionError("trio side")

        async def main():
            async with to_asyncio.start_guest_actor(**reg) as ga:
                with pytest.raises(ZeroDivisionError, match="trio side"):
                    await ga.run(fails)
                return await ga.run(trio.to_thread.run_sync, square, 4)

        assert asyncio.run(main()) == 16

    def test_run_after_aclose_refused(self, reg):
        """Test that GuestActor.run() after aclose() raises RuntimeError instead of hanging."""

        async def main():
            ga = to_asyncio.start_guest_actor(**reg)
            await ga.wait_started()
            await ga.aclose()
            await ga.aclose()  # idempotent
            with pytest.raises(RuntimeError, match="stopped"):
                await asyncio.wait_for(ga.run(trio.sleep, 0), HANG_GUARD)

        asyncio.run(main())

    def test_startup_failure_raises_from_wait_started(self, reg):
        """Test that a root actor that cannot start raises its error from wait_started()."""

        async def main():
            ga = to_asyncio.start_guest_actor(start_method="no-such-method", **reg)
            with pytest.raises(ValueError, match="unknown start_method"):
                await asyncio.wait_for(ga.wait_started(), HANG_GUARD)
            await ga.aclose()
            return ga.guest.done()

        assert asyncio.run(main()) is True


# -- asyncio from trio, in one process ------------------------------------------------------


def leftover_asyncio_tasks() -> list[str]:
    """asyncio tasks still running besides the guest host (call from trio in guest mode)."""
    loop = to_asyncio.host_loop()
    return [t.get_name() for t in asyncio.all_tasks(loop) if t.get_name() != to_asyncio.HOST_TASK_NAME]


def trio_task_names() -> Counter:
    """How many trio tasks of each name this run has (walking from the root task)."""
    names: Counter = Counter()

    def walk(task) -> None:
        names[task.name] += 1
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return names


def trio_waker():
    """A sync callable that asyncio code can call to set a trio Event (and the Event)."""
    event = trio.Event()
    token = trio.lowlevel.current_trio_token()
    return event, lambda: token.run_sync_soon(event.set)


async def aio_add(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


async def aio_fails(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


async def aio_cancels_itself() -> None:
    asyncio.current_task().cancel()
    await asyncio.sleep(0)


async def aio_wait_forever(started, record: list) -> None:
    started()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        record.append("asyncio cancelled")
        raise


def in_guest(trio_fn, *args):
    """Run a trio function as an asyncio guest, with a hang guard."""

    async def main():
        with trio.fail_after(HANG_GUARD):
            return await trio_fn(*args)

    return to_asyncio.run_as_asyncio_guest(main)


class TestRunTask:
    def test_returns_result_and_leaves_no_task(self):
        """Test that run_task returns the coroutine's result and leaves no asyncio task."""

        async def main():
            result = await to_asyncio.run_task(aio_add, x=1, y=2)
            return result, leftover_asyncio_tasks()

        assert in_guest(main) == (3, [])

    def test_asyncio_error_raised_in_trio_with_its_traceback(self):
        """Test that an asyncio error surfaces in trio as itself, its traceback showing the
        asyncio function."""

        async def main():
            with pytest.raises(ValueError, match="aio boom") as info:
                await to_asyncio.run_task(aio_fails, message="aio boom")
            return [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]

        assert "aio_fails" in in_guest(main)

    def test_trio_cancel_cancels_the_asyncio_task(self):
        """Test that cancelling the trio side cancels the asyncio task and waits for it."""
        record: list[str] = []

        async def run_task_forever(started_cb, rec):
            await to_asyncio.run_task(aio_wait_forever, started=started_cb, record=rec)

        async def main():
            started, set_started = trio_waker()
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as n:
                    n.start_soon(run_task_forever, set_started, record)
                    await started.wait()
                    scope.cancel()
            record.append("trio side done")
            return leftover_asyncio_tasks()

        assert in_guest(main) == []
        assert record == ["asyncio cancelled", "trio side done"]

    def test_asyncio_self_cancel_raises_asyncio_cancelled(self):
        """Test that an asyncio task cancelled by asyncio raises AsyncioCancelled in trio."""

        async def main():
            with pytest.raises(na.AsyncioCancelled, match="cancelled on the asyncio side") as info:
                await to_asyncio.run_task(aio_cancels_itself)
            return type(info.value.__cause__)

        assert in_guest(main) is asyncio.CancelledError

    def test_refused_outside_guest_mode(self):
        """Test that run_task under a plain trio.run raises RuntimeError naming infect_asyncio."""

        async def main():
            with pytest.raises(RuntimeError, match="infect_asyncio=True"):
                await to_asyncio.run_task(aio_add, x=1, y=2)

        trio.run(main)

    def test_non_coroutine_function_refused(self):
        """Test that a sync function passed to run_task raises TypeError asking for async def."""

        async def main():
            with pytest.raises(TypeError, match="async def"):
                await to_asyncio.run_task(square, x=2)

        in_guest(main)


async def aio_echo(to_trio, from_trio, greeting: str = "ready") -> str:
    to_trio.send_nowait(greeting)
    while True:
        msg = await from_trio.get()
        if msg is None:
            return "echo done"
        to_trio.send_nowait(msg)


async def aio_produce(to_trio, from_trio, count: int) -> int:
    to_trio.send_nowait("start")
    for i in range(count):
        to_trio.send_nowait(i)
        if i % 100 == 0:
            await asyncio.sleep(0)
    return count


async def aio_fail_after_first(to_trio, from_trio) -> None:
    to_trio.send_nowait("first")
    await from_trio.get()
    raise ValueError("asyncio side failed")


async def aio_no_first(to_trio, from_trio) -> None:
    await asyncio.sleep(0)


async def aio_cancel_self_after_first(to_trio, from_trio) -> None:
    to_trio.send_nowait("first")
    await from_trio.get()
    asyncio.current_task().cancel()
    await asyncio.sleep(0)


async def aio_record_cancel(to_trio, from_trio, record: list) -> None:
    to_trio.send_nowait("first")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        record.append("asyncio cancelled")
        raise


class TestOpenChannelFrom:
    def test_echo_round_trip_then_end(self):
        """Test that values go both ways and that receiving ends once the asyncio task
        returns, whose result wait_asyncio_complete() gives."""

        async def main():
            async with to_asyncio.open_channel_from(aio_echo, greeting="hi") as (first, chan):
                echoed = []
                for i in range(5):
                    await chan.send(i)
                    echoed.append(await chan.receive())
                await chan.send(None)
                rest = [v async for v in chan]
                result = await chan.wait_asyncio_complete()
            return first, echoed, rest, result, leftover_asyncio_tasks()

        assert in_guest(main) == ("hi", [0, 1, 2, 3, 4], [], "echo done", [])

    def test_many_values_arrive_in_order(self):
        """Test that 10,000 values sent from asyncio arrive in trio in order."""

        async def main():
            async with to_asyncio.open_channel_from(aio_produce, count=10_000) as (first, chan):
                return first, [v async for v in chan]

        first, got = in_guest(main)
        assert first == "start"
        assert got == list(range(10_000))

    def test_asyncio_error_cancels_body_and_is_raised(self):
        """Test that an asyncio-side error cancels the trio block and is raised from it."""
        body = []

        async def main():
            with pytest.raises(ValueError, match="asyncio side failed"):
                async with to_asyncio.open_channel_from(aio_fail_after_first) as (_first, chan):
                    await chan.send("go")
                    try:
                        await trio.sleep_forever()
                    except trio.Cancelled:
                        body.append("body cancelled")
                        raise
            return leftover_asyncio_tasks()

        assert in_guest(main) == []
        assert body == ["body cancelled"]

    def test_trio_exit_cancels_asyncio_task(self):
        """Test that leaving the block (normally, or by an error) cancels the asyncio task
        and waits for it."""
        record: list[str] = []

        async def main():
            async with to_asyncio.open_channel_from(aio_record_cancel, record=record) as (_first, _chan):
                pass
            record.append("block left")
            with pytest.raises(KeyError):
                async with to_asyncio.open_channel_from(aio_record_cancel, record=record) as (_first, _chan):
                    raise KeyError("trio side failed")
            record.append("block failed")
            return leftover_asyncio_tasks()

        assert in_guest(main) == []
        assert record == ["asyncio cancelled", "block left", "asyncio cancelled", "block failed"]

    def test_no_first_value_raises(self):
        """Test that an asyncio function returning before its first value raises RuntimeError."""

        async def main():
            with pytest.raises(RuntimeError, match="before sending its first value"):
                async with to_asyncio.open_channel_from(aio_no_first):
                    pass

        in_guest(main)

    def test_asyncio_self_cancel_raises_asyncio_cancelled(self):
        """Test that the asyncio task cancelling itself raises AsyncioCancelled from the block."""

        async def main():
            with pytest.raises(na.AsyncioCancelled):
                async with to_asyncio.open_channel_from(aio_cancel_self_after_first) as (_first, chan):
                    await chan.send("go")
                    await trio.sleep_forever()

        in_guest(main)

    def test_subscribers_each_see_every_value(self):
        """Test that two subscribers of a LinkedTaskChannel each receive every value."""

        async def main():
            async with to_asyncio.open_channel_from(aio_produce, count=50) as (_first, chan):
                results: dict[str, list[int]] = {}

                async def consume(name: str, sub) -> None:
                    results[name] = [v async for v in sub]

                async with chan.subscribe() as a, chan.subscribe() as b:  # both before any value
                    async with trio.open_nursery() as n:
                        n.start_soon(consume, "a", a)
                        n.start_soon(consume, "b", b)
            return results

        assert in_guest(main) == {"a": list(range(50)), "b": list(range(50))}

    def test_send_after_asyncio_returned_raises(self):
        """Test that sending to an asyncio task that has returned raises BrokenResourceError."""

        async def main():
            async with to_asyncio.open_channel_from(aio_echo) as (_first, chan):
                await chan.send(None)
                await chan.wait_asyncio_complete()
                with pytest.raises(trio.BrokenResourceError, match="has finished"):
                    await chan.send(1)

        in_guest(main)


# -- infected actors: real processes ----------------------------------------------------------

_child_record: list[str] = []  # filled inside the child process, read back over RPC


def child_record() -> list[str]:
    return list(_child_record)


async def add_via_asyncio(x: int, y: int) -> dict:
    return {"sum": await to_asyncio.run_task(aio_add, x=x, y=y), **whoami()}


async def fail_via_asyncio() -> None:
    await to_asyncio.run_task(aio_fails, message="failed in asyncio in the child")


async def self_cancel_via_asyncio() -> None:
    await to_asyncio.run_task(aio_cancels_itself)


@na.context
async def stream_from_asyncio(ctx: na.Context, count: int) -> dict:
    """Stream ``count`` values produced by asyncio to the caller; report leftovers."""
    tasks_before, aio_before = trio_task_names(), leftover_asyncio_tasks()
    async with to_asyncio.open_channel_from(aio_produce, count=count) as (first, chan):
        await ctx.started(first)
        async with ctx.open_stream() as stream:
            async for value in chan:
                await stream.send(value)
    return {
        "new_trio_tasks": dict(trio_task_names() - tasks_before),
        "asyncio_before": aio_before,
        "asyncio_after": leftover_asyncio_tasks(),
    }


async def aio_record_in_child(to_trio, from_trio) -> None:
    to_trio.send_nowait("first")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _child_record.append("asyncio cancelled")
        raise


@na.context
async def asyncio_forever(ctx: na.Context) -> None:
    async with to_asyncio.open_channel_from(aio_record_in_child) as (first, _chan):
        await ctx.started(first)
        await trio.sleep_forever()


@na.context
async def echo_server(ctx: na.Context) -> None:
    """The README's echo server: an asyncio task echoes what the caller streams in."""
    async with to_asyncio.open_channel_from(aio_echo) as (first, chan):
        await ctx.started(first)
        async with ctx.open_stream() as stream:
            async for msg in stream:
                await chan.send(msg)
                await stream.send(await chan.receive())


async def aio_fail_midway(to_trio, from_trio) -> None:
    to_trio.send_nowait("first")
    for i in range(3):
        to_trio.send_nowait(i)
    await asyncio.sleep(0)
    raise ValueError("asyncio producer broke")


@na.context
async def stream_until_asyncio_fails(ctx: na.Context) -> None:
    async with to_asyncio.open_channel_from(aio_fail_midway) as (first, chan):
        await ctx.started(first)
        async with ctx.open_stream() as stream:
            async for value in chan:
                await stream.send(value)


def infected_run(trio_fn, reg, *args):
    async def main():
        with trio.fail_after(HANG_GUARD):
            return await trio_fn(*args)

    return trio.run(main)


class TestInfectedActors:
    def test_start_actor_infected_runs_asyncio(self, reg):
        """Test that start_actor(infect_asyncio=True) gives a child that is infected, runs
        in guest mode and can run asyncio code; a plain child is not infected."""

        async def main():
            async with na.open_nursery(**reg) as an:
                infected = await an.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
                plain = await an.start_actor("plain", enable_modules=[__name__])
                got = await infected.run(add_via_asyncio, x=2, y=3)
                plain_info = await plain.run(whoami)
                await an.cancel()
            return got, plain_info

        got, plain_info = infected_run(main, reg)
        assert (got["sum"], got["infected"], got["guest"]) == (5, True, True)
        assert (plain_info["infected"], plain_info["guest"]) == (False, False)
        assert got["pid"] != os.getpid()

    def test_run_in_actor_infected_result(self, reg):
        """Test that run_in_actor(infect_asyncio=True) returns what the asyncio code computed."""

        async def main():
            async with na.open_nursery(**reg) as an:
                portal = await an.run_in_actor(add_via_asyncio, x=20, y=22, infect_asyncio=True)
                return await portal.result()

        got = infected_run(main, reg)
        assert (got["sum"], got["infected"]) == (42, True)

    def test_asyncio_error_in_child_reaches_parent(self, reg):
        """Test that an asyncio error in an infected child reaches the parent boxed, with
        its type and the asyncio function in the remote traceback."""

        async def main():
            async with na.open_nursery(**reg) as an:
                portal = await an.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
                with pytest.raises(na.RemoteActorError) as info:
                    await portal.run(fail_via_asyncio)
                await an.cancel()
            return info.value

        err = infected_run(main, reg)
        assert err.type is ValueError
        assert "failed in asyncio in the child" in str(err)
        assert "aio_fails" in err.tb_str

    def test_asyncio_self_cancel_in_child_reaches_parent(self, reg):
        """Test that an asyncio task cancelled by asyncio in a child reaches the parent as a
        boxed AsyncioCancelled."""

        async def main():
            async with na.open_nursery(**reg) as an:
                portal = await an.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
                with pytest.raises(na.RemoteActorError) as info:
                    await portal.run(self_cancel_via_asyncio)
                await an.cancel()
            return info.value

        assert infected_run(main, reg).type is na.AsyncioCancelled

    def test_ten_thousand_values_from_asyncio_through_a_context(self, reg):
        """Test that 10,000 values produced by asyncio in a child reach the parent in order
        through a context stream, and the child leaks no asyncio or trio task."""

        async def main():
            async with na.open_nursery(**reg) as an:
                portal = await an.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
                async with portal.open_context(stream_from_asyncio, count=10_000) as (ctx, first):
                    async with ctx.open_stream() as stream:
                        got = [v async for v in stream]
                    report = await ctx.result()
                await an.cancel()
            return first, got, report

        first, got, report = infected_run(main, reg)
        assert first == "start"
        assert got == list(range(10_000))
        assert report["asyncio_before"] == report["asyncio_after"] == []
        assert report["new_trio_tasks"] == {}

    def test_asyncio_failure_midstream_reaches_parent(self, reg):
        """Test that an asyncio producer failing in the middle of a context stream ends the
        child's context and reaches the parent as a boxed ValueError."""

        async def main():
            got = []
            async with na.open_nursery(**reg) as an:
                portal = await an.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
                with pytest.raises(na.RemoteActorError) as info:
                    async with portal.open_context(stream_until_asyncio_fails) as (ctx, _first):
                        async with ctx.open_stream() as stream:
                            async for value in stream:
                                got.append(value)
                        await ctx.result()
                await an.cancel()
            return got, info.value

        got, err = infected_run(main, reg)
        assert err.type is ValueError
        assert "asyncio producer broke" in str(err)
        assert got == [0, 1, 2][: len(got)]  # what arrived before the failure, in order

    def test_parent_cancel_cancels_asyncio_task_in_child(self, reg):
        """Test that cancelling a context from the parent cancels the asyncio task behind it
        in the infected child."""

        async def main():
            async with na.open_nursery(**reg) as an:
                portal = await an.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
                async with portal.open_context(asyncio_forever) as (ctx, first):
                    await ctx.cancel()
                record = await portal.run(child_record)
                await an.cancel()
            return first, record

        assert infected_run(main, reg) == ("first", ["asyncio cancelled"])

    def test_echo_server(self, reg):
        """Test that an infected actor serves a @context echo server backed by asyncio."""

        async def main():
            async with na.open_nursery(**reg) as an:
                portal = await an.start_actor("aio", enable_modules=[__name__], infect_asyncio=True)
                async with portal.open_context(echo_server) as (ctx, first):
                    async with ctx.open_stream() as stream:
                        echoed = []
                        for i in range(10):
                            await stream.send(i)
                            echoed.append(await stream.receive())
                await an.cancel()
            return first, echoed

        assert infected_run(main, reg) == ("ready", list(range(10)))

    def test_run_with_infect_asyncio_root(self, reg):
        """Test that run(fn, infect_asyncio=True) makes an infected root that runs asyncio code."""

        async def root_main():
            return await add_via_asyncio(x=1, y=1)

        got = na.run(root_main, infect_asyncio=True, **reg)
        assert (got["sum"], got["infected"], got["guest"]) == (2, True, True)

    def test_open_root_actor_infected_refused_under_trio_run(self, reg):
        """Test that open_root_actor(infect_asyncio=True) under plain trio.run raises
        RuntimeError pointing to run_as_asyncio_guest."""

        async def main():
            with pytest.raises(RuntimeError, match="run_as_asyncio_guest"):
                async with na.open_root_actor(infect_asyncio=True, **reg):
                    pass

        trio.run(main)


DAEMON_SCRIPT = """
import sys
import notebook_actors as na
na.run_daemon([], infect_asyncio=True, registry_addrs=[sys.argv[1]])
"""


def test_infected_run_daemon_ends_on_sigint(tmp_path):
    """Test that run_daemon(infect_asyncio=True) serves until SIGINT, then ends with
    KeyboardInterrupt and removes its registry socket."""
    import signal

    script = tmp_path / "daemon.py"
    script.write_text(DAEMON_SCRIPT)
    reg = testing.private_registry_addr()
    proc = testing.start_script(str(script), reg)
    try:
        assert testing.wait_for_path(reg.removeprefix("uds:"), timeout=HANG_GUARD), "the daemon never listened"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        testing.kill_all([proc.pid])
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
    assert not os.path.exists(reg.removeprefix("uds:"))


HOST_SCRIPT = """
import asyncio, sys
import trio
import notebook_actors as na
from notebook_actors import to_asyncio

def pid():
    import os
    return os.getpid()

from notebook_actors.testing import alive

child_pid = []

async def spawn_and_wait():
    async with na.open_nursery() as an:
        portal = await an.start_actor("child", enable_modules=[__name__])
        child_pid.append(await portal.run(pid))
        print("child", child_pid[0], flush=True)
        await trio.sleep_forever()

async def main():
    try:
        async with to_asyncio.start_guest_actor(registry_addrs=[sys.argv[1]]) as ga:
            await ga.run(spawn_and_wait)
    finally:
        print("child alive after close:", alive(child_pid[0]), flush=True)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_sigint_in_asyncio_host_tears_the_tree_down(tmp_path):
    """Test that Ctrl-C in an asyncio program hosting the runtime (start_guest_actor)
    cancels the trio work, reaps the child actor and ends with KeyboardInterrupt."""
    import signal

    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    proc = testing.start_script(str(script), testing.private_registry_addr())
    child_pid = None
    try:
        line = proc.stdout.readline()  # printed once the child answered
        assert line.startswith("child "), (line, proc.stderr.read() if proc.poll() is not None else "")
        child_pid = int(line.split()[1])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        testing.kill_all([proc.pid] + ([child_pid] if child_pid else []))
    assert "KeyboardInterrupt" in err
    assert "child alive after close: False" in out.splitlines(), (out, err)

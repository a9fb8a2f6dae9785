"""asyncio interop: trio as a guest on asyncio (run_as_asyncio_guest, start_guest_run,
start_guest_actor), infected actors, run_task and open_channel_from."""
from __future__ import annotations

import asyncio
import os

import pytest
import trio

import notebook_actors as na
from notebook_actors import testing, to_asyncio

HANG_GUARD = 60


@pytest.fixture
def reg():
    return {"registry_addrs": [testing.private_registry_addr()]}


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
            await trio.sleep(0)
            return x, to_asyncio.is_guest_mode(), asyncio.get_running_loop() is not None

        assert not to_asyncio.is_guest_mode()
        assert to_asyncio.run_as_asyncio_guest(main, 3) == (3, True, True)
        assert not to_asyncio.is_guest_mode()

    def test_raises_trio_error(self):
        """Test that an error in trio_main is raised from run_as_asyncio_guest."""

        async def main():
            await trio.sleep(0)
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
            await trio.sleep(0)  # the first checkpoint sees the cancel
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
            await trio.sleep(0)
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
            await trio.sleep(0)
            raise ZeroDivisionError("trio side")

        async def main():
            async with to_asyncio.start_guest_actor(**reg) as ga:
                with pytest.raises(ZeroDivisionError, match="trio side"):
                    await ga.run(fails)
                return await ga.run(trio.to_thread.run_sync, square, 4)

        assert asyncio.run(main()) == 16

    def test_startup_failure_raises_from_wait_started(self, reg):
        """Test that a root actor that cannot start raises its error from wait_started()."""

        async def main():
            ga = to_asyncio.start_guest_actor(start_method="no-such-method", **reg)
            with pytest.raises(ValueError, match="unknown start_method"):
                await asyncio.wait_for(ga.wait_started(), HANG_GUARD)
            await ga.aclose()
            return ga.guest.done()

        assert asyncio.run(main()) is True

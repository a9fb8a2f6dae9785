"""Portals: run (function and string forms), run_from_ns, result, cancel_actor."""

from __future__ import annotations

import os

import pytest
import trio
import trio.lowlevel
import trio.testing

import notebook_actors as na
from notebook_actors import testing

CALLS: list[int] = []


def add(a: int, b: int) -> int:
    return a + b


async def async_add(a: int, b: int) -> int:
    await trio.lowlevel.checkpoint()
    return a + b


def count_call() -> int:
    """Counts its calls in the actor that runs it."""
    CALLS.append(1)
    return len(CALLS)


def fail(msg: str) -> None:
    raise ValueError(msg)


async def sleep_forever() -> None:
    await trio.sleep_forever()


async def numbers(n: int):
    for i in range(n):
        yield i


def test_run_function_and_string_forms(reg):
    """Test that portal.run accepts a function object or 'module', 'fname' strings,
    sync or async, with keyword arguments."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("adder", enable_modules=[__name__])
            assert await portal.run(add, a=1, b=2) == 3
            assert await portal.run(async_add, a=3, b=4) == 7
            assert await portal.run(__name__, "add", a=5, b=6) == 11
            assert await portal.run_from_ns(__name__, "async_add", a=1, b=1) == 2
            await portal.cancel_actor()

    trio.run(main)


def test_run_misuse_says_the_right_call(reg):
    """Test that positional arguments, a lone string, and a generator given to run()
    raise TypeError in the caller showing the right call."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("adder", enable_modules=[__name__])
            with pytest.raises(TypeError, match=r"portal.run\(add, x=1\)"):
                await portal.run(add, 1, 2)
            with pytest.raises(TypeError, match="module and a function name"):
                await portal.run(__name__)
            with pytest.raises(TypeError, match="open_stream_from"):
                await portal.run(numbers, n=1)
            assert await portal.run(add, a=1, b=1) == 2  # still usable
            await portal.cancel_actor()

    trio.run(main)


def test_result_is_cached(reg):
    """Test that portal.result() returns the same value on every call, while the
    function ran once."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.run_in_actor(count_call)
            first = await portal.result()
            assert first == 1
            assert await portal.result() == 1
        assert await portal.result() == 1  # after the actor is gone, too

    trio.run(main)


def test_result_error_is_cached_and_raised_from_nursery(reg):
    """Test that a run_in_actor error is re-raised by every result() call and by the
    nursery block, as one RemoteActorError carrying the original type."""

    async def main() -> None:
        with pytest.raises(na.RemoteActorError) as from_nursery:
            async with na.open_nursery(**reg) as n:
                portal = await n.run_in_actor(fail, msg="bad input")
                for _ in range(2):
                    with pytest.raises(na.RemoteActorError) as info:
                        await portal.result()
                    assert info.value.type is ValueError
        assert from_nursery.value.type is ValueError
        assert "bad input" in str(from_nursery.value)

    trio.run(main)


def test_result_of_a_daemon_raises_noresult(reg):
    """Test that result() on a start_actor portal raises NoResult right away."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("daemon")
            with pytest.raises(na.NoResult, match="run_in_actor"):
                await portal.result()
            await portal.cancel_actor()

    trio.run(main)


def test_cancel_actor_stops_a_daemon_and_its_calls(reg):
    """Test that cancel_actor() acknowledges, ends the actor's running calls with
    ContextCancelled in their callers, and lets the nursery exit."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("sleeper", enable_modules=[__name__])
            errors: list[BaseException] = []

            async def call_sleep() -> None:
                try:
                    await portal.run(sleep_forever)
                except na.RemoteActorError as exc:
                    errors.append(exc)

            async with trio.open_nursery() as tn:
                tn.start_soon(call_sleep)
                await trio.testing.wait_all_tasks_blocked()  # its Start is queued
                # one channel keeps order: once this returns, the sleep call runs there
                assert await portal.run(add, a=0, b=0) == 0
                assert await portal.cancel_actor() is True
            assert len(errors) == 1
            assert isinstance(errors[0], na.ContextCancelled)
            assert errors[0].canceller is not None
        assert not portal.channel.connected()
        # asking again once it is gone: no acknowledgement, no error
        assert await portal.cancel_actor() is False

    trio.run(main)


def test_cancel_actor_on_run_in_actor_is_not_an_error(reg):
    """Test that cancelling a run_in_actor actor through its portal ends the nursery
    without an error, and its result() then raises."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.run_in_actor(sleep_forever)
            assert await portal.cancel_actor() is True
        with pytest.raises(na.RemoteActorError):
            await portal.result()

    trio.run(main)


def test_portal_channel_identifies_the_peer(reg):
    """Test that portal.channel.uid is the child's uid and connected() follows its life."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("named")
            assert await portal.run_from_ns("self", "ping") == "pong"
            assert portal.channel.uid[0] == "named"
            assert portal.channel.connected()
            assert portal.channel.peer_pid != os.getpid()
            await portal.cancel_actor()

    trio.run(main)


async def sleep_then_return(started: str, release: str) -> str:
    open(started, "w").close()
    await trio.to_thread.run_sync(testing.wait_for_path, release, 60)
    await trio.lowlevel.checkpoint()  # a cancelled call would end here
    return "finished"


def test_giving_up_on_result_does_not_cancel_the_actor(reg, tmp_path):
    """Test that a timeout around portal.result() only stops the waiting: the
    run_in_actor function keeps running, and its result arrives later."""
    started, release = tmp_path / "started", tmp_path / "release"

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.run_in_actor(sleep_then_return, started=str(started), release=str(release))
            assert await trio.to_thread.run_sync(testing.wait_for_path, str(started), 30)
            with trio.move_on_after(0.1) as scope:
                await portal.result()
            assert scope.cancelled_caught
            release.touch()
            assert await portal.result() == "finished"
        assert await portal.result() == "finished"

    trio.run(main)


RUNNING: list[str] = []


async def sleep_while_recorded() -> None:
    RUNNING.append("sleeping")
    try:
        await trio.sleep_forever()
    finally:
        RUNNING.remove("sleeping")


async def running_calls_once_settled() -> int:
    await trio.testing.wait_all_tasks_blocked()
    return len(RUNNING)


def test_call_cancelled_before_it_started_does_not_run_on(reg):
    """Test that a call cancelled right away (its Start and Cancel arrive together) is
    cancelled in the other actor too, instead of running on unobserved."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("d", enable_modules=[__name__])
            await portal.run_from_ns("self", "ping")
            with trio.CancelScope() as scope:
                scope.cancel()
                await portal.run(sleep_while_recorded)
            assert await portal.run(running_calls_once_settled) == 0
            await portal.cancel_actor()

    trio.run(main)


def identity(value):
    return value


def identity_type(value) -> str:
    return type(value).__name__


#: scalars on both sides of msgpack's 64-bit integer range, and each scalar type
SCALARS = [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 2**100, 1.5, "ü", b"\0\xff", True, None]


def test_scalars_travel_whatever_their_size(reg):
    """Test that scalar arguments and results come back equal and of their own type,
    including integers msgpack cannot hold (they travel pickled)."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("scalars", enable_modules=[__name__])
            for value in SCALARS:
                got = await portal.run(identity, value=value)
                assert (got, type(got)) == (value, type(value)), value
                assert await portal.run(identity_type, value=value) == type(value).__name__
            await portal.cancel_actor()

    trio.run(main)

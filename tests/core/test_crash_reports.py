"""Exact crash reports: the exit code or signal of an actor that died is in the error
the user sees, also when its death is first seen as a closed channel by a call."""

from __future__ import annotations

import os
import signal

import pytest
import trio

import notebook_actors as na
from notebook_actors.testing import trio_test


def exit_3() -> None:
    os._exit(3)


def die_by_sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("run", range(8))
@trio_test
async def test_os_exit_during_a_call_reports_code_3(reg, run):
    """Test that a daemon actor calling ``os._exit(3)`` during an RPC ends the block
    with ActorCrashed naming exit code 3, every run: the call whose channel closed
    waits for the exit status instead of racing it with a bare TransportClosed."""
    with pytest.raises(na.ActorCrashed) as info:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("w", enable_modules=[__name__])
            with trio.fail_after(30):
                await portal.run(exit_3)
    assert info.value.exitcode == 3
    assert "exit code 3" in str(info.value)


@trio_test
async def test_a_shielded_call_sees_the_exit_code_itself(reg):
    """Test that the call itself reports the crash with the code and the call's name
    (``'w' (pid N) exited with exit code 3 during call exit_3()``) when it is the one
    that sees it (here: shielded from the nursery's cancellation)."""
    seen = {}
    with pytest.raises(na.ActorCrashed):
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("w", enable_modules=[__name__])
            with trio.CancelScope(shield=True), trio.fail_after(30):
                try:
                    await portal.run(exit_3)
                except na.ActorCrashed as exc:
                    seen["call"] = exc
                except BaseException as exc:
                    seen["other"] = exc
                    raise
    assert "other" not in seen, repr(seen.get("other"))
    assert seen["call"].exitcode == 3
    assert "'w'" in str(seen["call"]) and "exited with exit code 3 during call" in str(seen["call"])


@trio_test
async def test_sigkill_during_a_call_names_the_signal(reg):
    """Test that an actor killed by a signal during a call is reported with it."""
    with pytest.raises(na.ActorCrashed) as info:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("w", enable_modules=[__name__])
            with trio.fail_after(30):
                await portal.run(die_by_sigkill)
    assert info.value.exitcode == -signal.SIGKILL
    assert "SIGKILL" in str(info.value)


@na.context
async def send_one_then_exit_3(ctx: na.Context) -> None:
    """Stream 1, wait until the caller says it has it, then exit with code 3 (so
    the value is known to have arrived before the death, without a sleep)."""
    await ctx.started()
    async with ctx.open_stream() as stream:
        await stream.send(1)
        await stream.receive()
        os._exit(3)


async def read_until_it_dies(portal: na.Portal, got: list) -> None:
    """Read ``send_one_then_exit_3``'s stream into ``got``, acknowledging the value."""
    async with portal.open_context(send_one_then_exit_3) as (ctx, _):
        async with ctx.open_stream() as stream:
            got.append(await stream.receive())
            await stream.send("got it")
            got.append(await stream.receive())  # the actor dies instead


@na.context
async def serve_a_leaf(ctx: na.Context) -> None:
    """Run in the middle actor: start a daemon ``leaf`` and hold it until cancelled."""
    async with na.open_nursery() as n:
        await n.start_actor("leaf", enable_modules=[__name__])
        await ctx.started()
        await trio.sleep_forever()


async def _direct_call_to_a_grandchild(reg: dict, use) -> BaseException:
    """Open a tree root -> middle -> leaf, reach the leaf directly (through the
    registry, not through its parent) and return what ``use(leaf_portal)`` raised in
    the root. Shielded, so the call sees the leaf's death itself rather than the
    middle's relayed error cancelling it first."""
    seen: dict[str, BaseException] = {}
    with pytest.raises(BaseException) as outer:  # the middle relays the crash of its leaf too
        async with na.open_nursery(**reg) as n:
            middle = await n.start_actor("middle", enable_modules=[__name__])
            async with middle.open_context(serve_a_leaf):
                async with na.wait_for_actor("leaf") as leaf:
                    with trio.CancelScope(shield=True), trio.fail_after(30):
                        try:
                            await use(leaf)
                        except BaseException as exc:  # what the user sees
                            seen["exc"] = exc
                await trio.sleep_forever()  # until the middle's error cancels us
    assert "exc" in seen, repr(outer.value)
    return seen["exc"]


@trio_test
async def test_a_grandchild_dying_during_a_direct_call_reports_its_exit_code(reg):
    """Test that a call made straight to a grandchild (a portal from
    ``wait_for_actor``, not through its parent) that dies with ``os._exit(3)`` raises
    ActorCrashed with code 3 and the call's name, not a bare TransportClosed: the
    caller asks the grandchild's parent, which reaped it, for the exit status."""
    exc = await _direct_call_to_a_grandchild(reg, lambda leaf: leaf.run(exit_3))
    assert isinstance(exc, na.ActorCrashed), repr(exc)
    assert exc.exitcode == 3
    assert "'leaf'" in str(
        exc
    ) and f"exited with exit code 3 during call {__name__.rsplit('.', 1)[-1]}:exit_3()" in str(exc)
    assert [uid[0] for uid in exc.relay_path][:2] == ["leaf", "middle"]


@trio_test
async def test_a_grandchild_killed_during_a_direct_call_names_the_signal(reg):
    """Test that a grandchild SIGKILLed during a direct call is reported with SIGKILL."""
    exc = await _direct_call_to_a_grandchild(reg, lambda leaf: leaf.run(die_by_sigkill))
    assert isinstance(exc, na.ActorCrashed), repr(exc)
    assert exc.exitcode == -signal.SIGKILL
    assert "SIGKILL" in str(exc)


@trio_test
async def test_a_grandchild_dying_during_a_direct_stream_reports_its_exit_code(reg):
    """Test that a stream read straight from a grandchild that exits with code 3
    mid-stream ends in ActorCrashed with code 3, after the value it did send."""
    got: list = []
    exc = await _direct_call_to_a_grandchild(reg, lambda leaf: read_until_it_dies(leaf, got))
    assert got == [1]
    assert isinstance(exc, na.ActorCrashed), repr(exc)
    assert exc.exitcode == 3


@trio_test
async def test_a_child_dying_during_a_stream_reports_its_exit_code(reg):
    """Test that a stream read from a child that exits with code 3 mid-stream ends
    in ActorCrashed with code 3, after the value it sent (not a TransportClosed),
    and that the nursery raises that one report of the crash (naming the call), not
    a MultiError of it and its own."""
    got: list = []
    seen: dict[str, BaseException] = {}
    with pytest.raises(na.ActorCrashed) as info:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("w", enable_modules=[__name__])
            with trio.CancelScope(shield=True), trio.fail_after(30):
                try:
                    await read_until_it_dies(portal, got)
                except BaseException as exc:  # what the stream's reader sees
                    seen["exc"] = exc
                    raise
    assert got == [1]
    assert info.value.exitcode == 3
    assert isinstance(seen.get("exc"), na.ActorCrashed), repr(seen.get("exc"))
    assert info.value is seen["exc"], "one report of the crash, the stream's (it names the call)"
    assert "during call" in str(info.value)

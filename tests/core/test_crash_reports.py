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

"""Spawn backends: selectable per root, per nursery, per actor and globally; the key
behaviours (result, RPC, error, cancel, crash) hold on each of them."""

from __future__ import annotations

import os
import signal
import sys

import psutil
import pytest
import trio

import notebook_actors as na
from notebook_actors import _spawn

METHODS = list(_spawn.START_METHODS)


@pytest.fixture
def restore_default_method():
    before = _spawn.default_start_method()
    yield
    _spawn.try_set_start_method(before)


def how_was_i_started() -> dict:
    me = psutil.Process()
    return {
        "method": na.current_actor().config.start_method,
        "cmdline": " ".join(me.cmdline()),
        "sid": os.getsid(0),
        "pid": os.getpid(),
    }


def fail() -> None:
    raise LookupError("nope")


async def sleep_forever() -> None:
    await trio.sleep_forever()


@pytest.mark.parametrize("method", METHODS)
def test_backend_per_root_runs_the_basics(reg, method):
    """Test that every backend, chosen on the root, gives a child in its own session
    that returns results, serves RPC, reports errors and obeys cancellation."""

    async def main() -> None:
        async with na.open_nursery(start_method=method, **reg) as n:
            info = await (await n.run_in_actor(how_was_i_started)).result()
            assert info["method"] == method
            assert info["sid"] == info["pid"]
            if method == "trio":
                assert "notebook_actors/_boot.py" in info["cmdline"]
            elif method.startswith("mp_"):
                assert "multiprocessing" in info["cmdline"]
            daemon = await n.start_actor("daemon", enable_modules=[__name__])
            assert (await daemon.run(how_was_i_started))["method"] == method
            with pytest.raises(na.RemoteActorError) as err:
                await daemon.run(fail)
            assert err.value.type is LookupError
            await n.run_in_actor(sleep_forever)
            await n.cancel()
            assert {c.exitcode for c in n._children.values()} == {0}

    trio.run(main)


@pytest.mark.parametrize("method", METHODS)
def test_backend_reports_a_crash(reg, method):
    """Test that on every backend a child killed by a signal is ActorCrashed."""

    async def main() -> None:
        with pytest.raises(na.ActorCrashed) as info:
            async with na.open_nursery(start_method=method, **reg) as n:
                portal = await n.start_actor("victim")
                assert await portal.run_from_ns("self", "ping") == "pong"
                os.kill(portal.channel.peer_pid, signal.SIGKILL)
        assert info.value.exitcode == -signal.SIGKILL

    trio.run(main)


def test_backend_per_nursery_and_per_actor(reg):
    """Test that a nested nursery and a single actor can each pick another backend
    than the root's."""

    async def main() -> None:
        async with na.open_root_actor(start_method="mp_spawn", **reg):
            async with na.open_nursery(start_method="trio") as n:
                by_nursery = await (await n.run_in_actor(how_was_i_started, name="a")).result()
                by_actor = await (
                    await n.run_in_actor(how_was_i_started, name="b", start_method="mp_forkserver")
                ).result()
            async with na.open_nursery() as n:
                by_root = await (await n.run_in_actor(how_was_i_started, name="c")).result()
        assert (by_nursery["method"], by_actor["method"], by_root["method"]) == ("trio", "mp_forkserver", "mp_spawn")

    trio.run(main)


def test_try_set_start_method_is_global(reg, restore_default_method):
    """Test that try_set_start_method() picks the backend of nurseries that name none,
    and that an unknown name is refused with the list of valid ones."""
    assert na.try_set_start_method("mp_spawn") == "mp_spawn"

    async def main() -> str:
        async with na.open_nursery(**reg) as n:
            return (await (await n.run_in_actor(how_was_i_started)).result())["method"]

    assert trio.run(main) == "mp_spawn"
    with pytest.raises(ValueError, match="trio"):
        na.try_set_start_method("fork")
    assert _spawn.default_start_method() == "mp_spawn"


def test_unknown_start_method_on_root_is_refused(reg):
    """Test that open_root_actor refuses an unknown start_method before starting."""

    async def main() -> None:
        with pytest.raises(ValueError, match="unknown start_method 'threads'"):
            async with na.open_root_actor(start_method="threads", **reg):
                pass

    trio.run(main)


def test_failing_spawn_raises_from_start_actor(reg, monkeypatch):
    """Test that a process that cannot be started raises from start_actor itself, and
    the nursery stays usable."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            monkeypatch.setattr(sys, "executable", "/nonexistent/python")
            with pytest.raises(OSError):
                await n.start_actor("never")
            monkeypatch.undo()
            portal = await n.start_actor("fine")
            assert await portal.run_from_ns("self", "ping") == "pong"
            await portal.cancel_actor()

    trio.run(main)


def test_child_that_never_connects_is_killed_and_reported(reg, tmp_path, monkeypatch):
    """Test that a child process that never connects back is SIGKILLed after the spawn
    timeout and the nursery raises trio.TooSlowError naming it."""
    from notebook_actors import _supervise

    stuck = tmp_path / "stuck-python"
    stuck.write_text("#!/bin/sh\nexec sleep 600\n")
    stuck.chmod(0o755)
    monkeypatch.setattr(_supervise, "SPAWN_TIMEOUT", 0.5)

    async def main() -> None:
        with pytest.raises(trio.TooSlowError, match="did not connect back"):
            async with na.open_nursery(start_method="trio", **reg) as n:
                python = sys.executable
                monkeypatch.setattr(sys, "executable", str(stuck))
                await n.start_actor("silent")
                monkeypatch.setattr(sys, "executable", python)  # keeps the short timeout
        assert set(n.exitcodes.values()) == {-signal.SIGKILL}

    trio.run(main)


def test_child_that_dies_before_reading_its_boot_record_is_its_crash(reg, tmp_path, monkeypatch):
    """Test that a child that dies before it has read its boot record (killed at once,
    while its parent still writes a boot record bigger than a pipe buffer) is reported
    as that actor's crash, naming it and the signal, not as the parent's broken pipe."""
    dying = tmp_path / "dying-python"
    dying.write_text("#!/bin/sh\nkill -9 $$\n")
    dying.chmod(0o755)
    # the boot record carries sys.path: make it larger than a pipe's 64 KiB buffer
    monkeypatch.setattr(sys, "path", [*sys.path, *(f"/nonexistent/{i}/{'x' * 1000}" for i in range(200))])

    async def main() -> None:
        with pytest.raises(na.ActorCrashed) as info:
            async with na.open_nursery(start_method="trio", **reg) as n:
                python = sys.executable
                monkeypatch.setattr(sys, "executable", str(dying))
                await n.start_actor("doomed")
                monkeypatch.setattr(sys, "executable", python)
        assert info.value.src_uid[0] == "doomed" and "SIGKILL" in str(info.value)
        assert n.exitcodes and set(n.exitcodes.values()) == {-signal.SIGKILL}

    trio.run(main)

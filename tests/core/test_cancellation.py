"""Cancellation end to end: nursery cancel, hard kill, cancel during spawn, a body
error while children start, escalation to SIGTERM/SIGKILL, outer cancel scopes."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time

import pytest
import trio

import notebook_actors as na
from notebook_actors import _spawn, testing

#: short grace periods keep the escalation tests quick
GRACE = 0.5


async def sleep_forever() -> None:
    await trio.sleep_forever()


def block_in_sleep(ready_path: str, ignore_sigterm: bool) -> None:
    """A sync call that cannot see a cancel request (it blocks the event loop)."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(ready_path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)


def raise_value() -> None:
    raise ValueError("bad")


def getpid() -> int:
    return os.getpid()


def _pids_of(nursery: na.ActorNursery) -> dict[str, int]:
    return {uid[0]: child.proc.pid for uid, child in nursery._children.items()}


def _exitcodes(nursery: na.ActorNursery) -> dict[str, int | None]:
    return {uid[0]: code for uid, code in nursery.exitcodes.items()}


def test_nursery_cancel_stops_every_daemon(reg):
    """Test that nursery.cancel() stops daemons with calls in flight, cleanly (exit
    code 0, no error), and that the nursery is marked cancelled."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portals = [await n.start_actor(f"d{i}", enable_modules=[__name__]) for i in range(2)]
            pids = [await p.run(getpid) for p in portals]
            await n.cancel()
            assert n.cancelled
            assert _exitcodes(n) == {"d0": 0, "d1": 0}
        assert testing.wait_until_gone(pids, timeout=1) == []

    trio.run(main)


def test_nursery_hard_cancel_kills(reg):
    """Test that cancel(hard_kill=True) SIGKILLs children at once, without an error."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("victim", enable_modules=[__name__])
            await portal.run(getpid)
            await n.cancel(hard_kill=True)
            assert _exitcodes(n) == {"victim": -signal.SIGKILL}

    trio.run(main)


def test_cancel_before_the_child_connected(reg):
    """Test that cancelling right after spawn, before the child connected back, ends
    the child and leaves nothing behind."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("early")
            assert not portal.channel.connected()
            await n.cancel()
            # it got the cancel request queued for it, and exited by itself
            assert _exitcodes(n) == {"early": 0}

    trio.run(main)


def test_body_error_while_children_are_spawning(reg):
    """Test that an error in the body right after spawning (children not yet connected)
    is raised as itself and every child is reaped."""

    async def main() -> None:
        with pytest.raises(KeyError, match="oops"):
            async with na.open_nursery(**reg) as n:
                await n.start_actor("a")
                await n.run_in_actor(sleep_forever)
                raise KeyError("oops")
        assert _exitcodes(n) == {"a": 0, "sleep_forever": 0}

    trio.run(main)


def test_outer_cancel_scope_tears_down_the_tree(reg):
    """Test that cancelling a scope around the nursery (e.g. a timeout) cancels every
    child and exits without an error."""

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("d", enable_modules=[__name__])
                pid = await portal.run(getpid)
                await n.run_in_actor(sleep_forever)
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert testing.wait_until_gone([pid], timeout=1) == []

    trio.run(main)


def test_cancelled_call_is_cancelled_remotely(reg):
    """Test that cancelling a portal.run() in the caller cancels the remote call, and
    the actor keeps serving."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("d", enable_modules=[__name__])
            with trio.move_on_after(0.2):
                await portal.run(sleep_forever)
            assert await portal.run(getpid) == portal.channel.peer_pid
            await portal.cancel_actor()

    trio.run(main)


@pytest.mark.parametrize("method", _spawn.START_METHODS)
@pytest.mark.parametrize(
    "ignore_sigterm, expected", [(False, -signal.SIGTERM), (True, -signal.SIGKILL)], ids=["sigterm", "sigkill"]
)
def test_escalation_for_a_child_that_ignores_cancel(reg, tmp_path, ignore_sigterm, expected, method):
    """Test that a child stuck in a blocking call is ended by SIGTERM after the grace
    period, and by SIGKILL if it ignores SIGTERM too, with no error from the nursery
    (on every spawn backend)."""
    ready = tmp_path / "ready"

    async def main() -> None:
        async with na.open_nursery(cancel_grace=GRACE, start_method=method, **reg) as n:
            await n.run_in_actor(block_in_sleep, ready_path=str(ready), ignore_sigterm=ignore_sigterm)
            # the child says it is inside the blocking call
            assert await trio.to_thread.run_sync(testing.wait_for_path, str(ready), 30)
            await n.cancel()
            assert _exitcodes(n) == {"block_in_sleep": expected}

    trio.run(main)


def test_sibling_error_cancels_a_blocked_sibling(reg, tmp_path):
    """Test that one child's error tears down a sibling stuck in a blocking call
    (escalating), and the nursery raises only the error."""
    ready = tmp_path / "ready"

    async def main() -> None:
        with pytest.raises(na.RemoteActorError) as info:
            async with na.open_nursery(cancel_grace=GRACE, **reg) as n:
                await n.run_in_actor(block_in_sleep, ready_path=str(ready), ignore_sigterm=True)
                assert await trio.to_thread.run_sync(testing.wait_for_path, str(ready), 30)
                await n.run_in_actor(raise_value)
        assert info.value.type is ValueError
        assert _exitcodes(n)["block_in_sleep"] == -signal.SIGKILL

    trio.run(main)


SIGINT_SCRIPT = textwrap.dedent(
    """
    # root -> middle -> leaf, all busy; prints the pids, waits for Ctrl-C
    import json
    import os
    import sys

    import trio

    import notebook_actors as na


    @na.context
    async def middle(ctx):
        async with na.open_nursery() as n:
            leaf = await n.start_actor("leaf", enable_modules=["os"])
            await ctx.started([os.getpid(), await leaf.run("os", "getpid")])
            await trio.sleep_forever()


    async def main():
        async with na.open_nursery(registry_addrs=[sys.argv[1]]) as n:
            portal = await n.start_actor("middle", enable_modules=["__main__"])
            async with portal.open_context(middle) as (ctx, pids):
                print(json.dumps(pids), flush=True)
                await trio.sleep_forever()


    if __name__ == "__main__":
        trio.run(main)
    """
)


def test_sigint_to_the_root_script_tears_down_the_tree(tmp_path):
    """Test that Ctrl-C (SIGINT) to a root script running a three-level tree ends it
    with KeyboardInterrupt and leaves no descendant."""
    script = tmp_path / "tree.py"
    script.write_text(SIGINT_SCRIPT)
    proc = testing.start_script(str(script), testing.private_registry_addr())
    pids: list[int] = []
    try:
        line = proc.stdout.readline()
        pids = json.loads(line) if line.startswith("[") else []
        assert pids, line + proc.communicate(timeout=30)[1]
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGINT, err
        assert err.rstrip().endswith("KeyboardInterrupt"), err
        assert testing.wait_until_gone(pids, timeout=1) == []
    finally:
        testing.kill_all([*pids, proc.pid])
        if proc.returncode is None:
            proc.communicate(timeout=30)


def test_cancel_actor_of_a_blocked_actor_times_out(reg, tmp_path):
    """Test that portal.cancel_actor() returns False when the actor cannot acknowledge
    (it is stuck in a blocking call), and nursery.cancel() still ends it by signal."""
    ready = tmp_path / "ready"

    async def main() -> None:
        async with na.open_nursery(cancel_grace=GRACE, **reg) as n:
            portal = await n.start_actor("stuck", enable_modules=[__name__])
            lost: list[BaseException] = []

            async def call_blocking() -> None:
                try:
                    await portal.run(block_in_sleep, ready_path=str(ready), ignore_sigterm=False)
                except na.TransportClosed as exc:  # the call dies with its actor
                    lost.append(exc)

            async with trio.open_nursery() as tn:
                tn.start_soon(call_blocking)
                assert await trio.to_thread.run_sync(testing.wait_for_path, str(ready), 30)
                assert await portal.cancel_actor(timeout=GRACE) is False
                await n.cancel()
            assert _exitcodes(n) == {"stuck": -signal.SIGTERM}
            assert len(lost) == 1

    trio.run(main)

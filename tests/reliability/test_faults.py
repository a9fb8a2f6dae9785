"""Faults with real processes: children that crash in every way a process can, and
SIGKILL of a leaf, a middle actor or the root during spawn, RPC, streaming and
teardown. Every test ends with no actor process left (the autouse fixture) and no fd
leaked in the root (``no_fd_leak``); survivors are checked to keep working."""

from __future__ import annotations

import os
import random
import signal
import socket
import textwrap

import psutil
import pytest
import trio
import trio.lowlevel

import notebook_actors as na
from notebook_actors import testing
from notebook_actors.testing import _faults
from notebook_actors.testing._faults import FAULTS

#: a bound, not a delay: the checks return as soon as the processes are gone
GONE_WITHIN = 3.0
#: short grace periods keep escalation quick (the default is 3 s)
GRACE = 0.3
PHASES = ["spawn", "rpc", "stream", "teardown"]

pytestmark = pytest.mark.usefixtures("no_fd_leak")


def seeded_random(request) -> random.Random:
    """A Random whose seed shows in the test id's report (reproduce with RELIABILITY_SEED)."""
    seed = int(os.environ.get("RELIABILITY_SEED", random.randrange(2**32)))
    request.node.user_properties.append(("seed", seed))
    print(f"RELIABILITY_SEED={seed}")
    return random.Random(seed)


# -- a child that dies on its own -----------------------------------------------------------
@pytest.mark.parametrize(
    "fault, kwargs, exitcode",
    [
        ("exit_now", {"code": 3}, 3),
        ("segfault", {}, -signal.SIGSEGV),
    ],
)
def test_child_crash_mid_call_is_reported_with_its_exit_status(reg, fault, kwargs, exitcode):
    """Test that a daemon dying in the middle of a call (os._exit(3), a segfault) fails
    that call with TransportClosed, and the nursery raises ActorCrashed naming the actor
    and its exit code or signal; the root then starts a new actor fine."""

    async def main() -> None:
        with pytest.raises(na.ActorCrashed) as info:
            async with na.open_nursery() as n:
                portal = await n.start_actor("crasher", enable_modules=[FAULTS])
                with pytest.raises(na.TransportClosed):
                    await portal.run(getattr(_faults, fault), **kwargs)
        crashed = info.value
        assert crashed.exitcode == exitcode
        assert crashed.src_uid == portal.channel.uid
        assert "crasher" in str(crashed)
        why = f"exit code {exitcode}" if exitcode > 0 else signal.Signals(-exitcode).name
        assert why in str(crashed)
        async with na.open_nursery() as n:  # the runtime keeps working
            again = await n.run_in_actor(_faults.getpid)
            assert await again.result() > 0

    na.run(main, **reg)


def test_system_exit_in_a_call_is_an_error_and_the_actor_survives(reg):
    """Test that user code raising SystemExit(5) in an actor is a RemoteActorError of type
    SystemExit for the caller (the code in its message), and the actor keeps serving."""

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("exiter", enable_modules=[FAULTS])
            with pytest.raises(na.RemoteActorError) as info:
                await portal.run(_faults.raise_system_exit, code=5)
            assert info.value.type is SystemExit
            assert "5" in str(info.value) and "exiter" in str(info.value)
            assert await portal.run(_faults.getpid) == portal.channel.peer_pid
            await portal.cancel_actor()

    trio.run(main)


def test_system_exit_in_run_in_actor_reaches_the_nursery(reg):
    """Test that a run_in_actor function raising SystemExit fails the nursery with a
    RemoteActorError of type SystemExit naming the actor."""

    async def main() -> None:
        with pytest.raises(na.RemoteActorError) as info:
            async with na.open_nursery(**reg) as n:
                await n.run_in_actor(_faults.raise_system_exit, name="exiter", code=5)
        assert info.value.type is SystemExit
        assert info.value.src_uid[0] == "exiter"

    trio.run(main)


@pytest.mark.parametrize(
    "ignore_sigterm, exitcode", [(False, -signal.SIGTERM), (True, -signal.SIGKILL)], ids=["sigterm", "sigkill"]
)
def test_a_child_hanging_in_a_c_call_is_escalated(reg, tmp_path, ignore_sigterm, exitcode):
    """Test that cancelling a child blocked in a C call (libc pause) escalates to SIGTERM
    after the nursery's cancel_grace, then to SIGKILL when SIGTERM is ignored."""
    ready = tmp_path / "ready"

    async def main() -> None:
        async with na.open_nursery(cancel_grace=GRACE, **reg) as n:
            await n.run_in_actor(_faults.hang_in_c, name="hung", ready_path=str(ready), ignore_sigterm=ignore_sigterm)
            assert await trio.to_thread.run_sync(testing.wait_for_path, str(ready), 30)
            await n.cancel()
            (child,) = n._children.values()
            assert child.exitcode == exitcode

    trio.run(main)


def test_a_kill_from_outside_during_cancellation_is_still_a_crash(reg, tmp_path):
    """Test that a child SIGKILLed by someone else while its nursery waits for it to
    stop (a signal the nursery never sent) is reported as ActorCrashed, not taken for
    the requested stop."""
    ready = tmp_path / "ready"

    async def main() -> None:
        with pytest.raises(na.ActorCrashed) as info:
            # the grace is a hang guard here: the kill comes long before it expires
            async with na.open_nursery(cancel_grace=60, **reg) as n:
                await n.run_in_actor(_faults.hang_in_c, name="hung", ready_path=str(ready), ignore_sigterm=True)
                assert await trio.to_thread.run_sync(testing.wait_for_path, str(ready), 30)
                (child,) = n._children.values()
                async with trio.open_nursery() as tn:
                    tn.start_soon(n.cancel)
                    while not child.cancel_requested:
                        await trio.lowlevel.checkpoint()
                    assert child.proc.signals_sent == set()  # the nursery sent nothing yet
                    os.kill(child.proc.pid, signal.SIGKILL)
        assert info.value.exitcode == -signal.SIGKILL
        assert info.value.src_uid[0] == "hung"

    trio.run(main)


# -- SIGKILL of a leaf or a middle actor, the root surviving --------------------------------
async def _kill_children_of(pid: int, delay: float) -> list[int]:
    """After ``delay``, SIGKILL the first child process of ``pid`` that shows up."""
    await trio.sleep(delay)
    with trio.fail_after(30):
        while True:
            kids = testing.actor_children(pid)
            if kids:
                kids[0].kill()
                return [kids[0].pid]
            await trio.sleep(0.005)


@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_of_a_leaf_reaches_the_root_named_and_the_middle_survives(reg, request, phase):
    """Test that SIGKILL of a leaf at a random moment of ``phase`` ends in a clear error
    naming the leaf (ActorCrashed, relayed by the middle), or none when the middle was
    tearing the leaf down anyway; the middle actor keeps serving with no fd leaked."""
    rnd = seeded_random(request)

    async def main() -> None:
        async with na.open_nursery(**reg) as n:
            middle = await n.start_actor("middle", enable_modules=[FAULTS])
            mpid = await middle.run(_faults.getpid)
            await middle.run(_faults.warm_spawner)  # its template's fds live as long as it
            fds_before = await middle.run(_faults.fd_targets)
            outcome: object = None
            with trio.fail_after(60):
                try:
                    async with middle.open_context(_faults.leaf_activity, phase=phase) as (ctx, pids):
                        delay = rnd.uniform(0, 0.05)
                        if phase == "spawn":
                            killed = await _kill_children_of(mpid, delay)
                        else:
                            await trio.sleep(delay)
                            testing.kill_all(pids[:1])  # in teardown it may be gone already
                            killed = pids
                        if phase == "stream":
                            async with ctx.open_stream() as s:
                                async for _ in s:
                                    pass
                        outcome = await ctx.result()
                except na.RemoteActorError as exc:
                    outcome = exc
            assert testing.wait_until_gone(killed, GONE_WITHIN) == []
            if isinstance(outcome, na.ActorCrashed):
                assert outcome.src_uid[0].startswith("leaf")
                assert [u[0] for u in outcome.relay_path] == [outcome.src_uid[0], "middle"]
                assert "SIGKILL" in str(outcome)
            elif isinstance(outcome, na.RemoteActorError):
                # the middle's call on the leaf's channel failed first: that names the leaf
                assert outcome.type is na.TransportClosed, outcome
                assert "('leaf" in str(outcome).splitlines()[0]
            else:
                assert phase == "teardown" and outcome == "torn down", outcome
            # the middle survives, its dead leaf's sockets closed
            assert await middle.run(_faults.getpid) == mpid
            assert testing.wait_until_gone([p.pid for p in testing.actor_children(mpid)], GONE_WITHIN) == []
            assert await middle.run(_faults.fd_targets) == fds_before
            await middle.cancel_actor()

    trio.run(main)


@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_of_a_middle_actor_takes_its_leaves_and_the_root_goes_on(reg, request, phase):
    """Test that SIGKILL of a middle actor at a random moment of ``phase`` ends its leaves
    within a bounded wait; the root sees ActorCrashed (or TransportClosed on the open
    context) naming the middle, and spawns and calls a new actor afterwards."""
    rnd = seeded_random(request)

    async def main() -> None:
        errors: list[BaseException] = []
        try:
            async with na.open_nursery() as n:
                middle = await n.start_actor("middle", enable_modules=[FAULTS])
                mpid = await middle.run(_faults.getpid)
                leaves: list[int] = []
                with trio.fail_after(60):
                    try:
                        async with middle.open_context(_faults.leaf_activity, phase=phase, leaves=2) as (ctx, pids):
                            leaves = [p.pid for p in testing.actor_children(mpid)] or pids
                            await trio.sleep(rnd.uniform(0, 0.05))
                            leaves = list({*leaves, *(p.pid for p in testing.actor_children(mpid))})
                            os.kill(mpid, signal.SIGKILL)
                            if phase == "stream":
                                async with ctx.open_stream() as s:
                                    async for _ in s:
                                        pass
                            await ctx.result()
                    except (na.RemoteActorError, na.TransportClosed) as exc:
                        errors.append(exc)
                assert testing.wait_until_gone([mpid, *leaves], GONE_WITHIN) == []
        except na.ActorCrashed as exc:
            errors.append(exc)
        crashed = [e for e in errors if isinstance(e, na.ActorCrashed)]
        assert crashed, errors
        assert crashed[-1].src_uid[0] == "middle" and "SIGKILL" in str(crashed[-1])
        async with na.open_nursery() as n:  # the root keeps working
            p = await n.run_in_actor(_faults.getpid)
            assert await p.result() > 0

    na.run(main, **reg)


# -- SIGKILL of the root (a script) ---------------------------------------------------------
ROOT_SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    import trio

    import notebook_actors as na
    from notebook_actors.testing import _faults


    async def main():
        phase = sys.argv[2]
        async with na.open_nursery(registry_addrs=[sys.argv[1]]) as n:
            middle = await n.start_actor("middle", enable_modules=[_faults.FAULTS])
            async with middle.open_context(_faults.leaf_activity, phase=phase, leaves=2) as (ctx, pids):
                print("PHASE", flush=True)
                if phase == "stream":
                    async with ctx.open_stream() as s:
                        async for _ in s:
                            pass
                await ctx.result()
            await trio.sleep_forever()


    trio.run(main)
    """
)


def _marked(mark: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("RELIABILITY_TREE") == mark and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_of_the_root_leaves_nothing_below(tmp_path, request, phase):
    """Test that SIGKILL of a root script at a random moment of ``phase`` ends every actor
    below it (middle and leaves, including ones still starting) within a bounded wait."""
    rnd = seeded_random(request)
    script = tmp_path / "root.py"
    script.write_text(ROOT_SCRIPT)
    mark = os.urandom(8).hex()
    proc = testing.start_script(str(script), testing.private_registry_addr(), phase, env={"RELIABILITY_TREE": mark})
    try:
        line = proc.stdout.readline()
        assert line == "PHASE\n", line + proc.communicate(timeout=30)[1]
        trio.run(trio.sleep, rnd.uniform(0, 0.05))
        below = [p.pid for p in _marked(mark) if p.pid != proc.pid]
        assert below, "the tree should have a middle actor at least"
        proc.kill()
        proc.communicate(timeout=30)
        assert testing.wait_until_gone(below, GONE_WITHIN) == []
        assert testing.wait_until_gone([p.pid for p in _marked(mark)], GONE_WITHIN) == []
    finally:
        testing.kill_all([p.pid for p in _marked(mark)])
        if proc.returncode is None:
            proc.kill()
            proc.communicate(timeout=30)


def test_relay_path_of_a_crashed_grandchild_names_each_hop_once(reg):
    """Test that an ActorCrashed of a leaf relayed by its middle actor reads
    ``leaf -> middle -> root``... as seen by the root: leaf, then middle, each once."""

    async def main() -> None:
        with pytest.raises(na.RemoteActorError) as info:
            async with na.open_nursery(**reg) as n:
                await n.run_in_actor(_middle_whose_leaf_exits, name="middle")
        err = info.value
        assert err.type_name == "ActorCrashed"
        assert [u[0] for u in err.relay_path] == ["leaf", "middle"]
        assert "leaf" in str(err).splitlines()[0]

    trio.run(main)


async def _middle_whose_leaf_exits() -> None:
    async with na.open_nursery() as n:
        await n.run_in_actor(_faults.exit_now, name="leaf", code=3)


def test_a_peer_dying_mid_handshake_is_a_handshake_error(tmp_path):
    """Test that a peer whose connection resets in the middle of the handshake (it
    died) gives the dialer a HandshakeError (an OSError, as documented), not a bare
    trio.BrokenResourceError."""
    from notebook_actors import _channel
    from notebook_actors._codec import encode_frame
    from notebook_actors._exceptions import HandshakeError

    path = str(tmp_path / "dying.sock")

    async def main() -> None:
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await listener.bind(path)
        listener.listen()

        async def dying_peer() -> None:
            conn, _ = await listener.accept()
            await conn.send(encode_frame(_channel.Hello(_channel.PROTOCOL_VERSION, os.urandom(16))))
            await trio.lowlevel.wait_readable(conn)
            conn.close()  # the dialer's proof unread: its next read is reset

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                n.start_soon(dying_peer)
                with pytest.raises(HandshakeError, match="during the handshake"), listener:
                    await _channel.connect("uds:" + path, os.urandom(32), None)

    trio.run(main)

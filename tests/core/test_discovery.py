"""Discovery: find_actor(s), wait_for_actor, query_actor, get_registry, registration
on every kind of exit, and separate programs finding each other through a daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest
import trio
import trio.testing

import notebook_actors as na
from notebook_actors import testing
from notebook_actors._portal import LocalPortal
from notebook_actors.testing import trio_test

TIMEOUT = 60


def my_uid() -> list:
    return list(na.current_actor().uid)


def my_pid() -> int:
    return os.getpid()


async def wait_registered(actor: na.Actor, uid: tuple) -> None:
    """In the registry's own process: wait (woken by registry changes) until ``uid``
    is registered. Registration runs concurrently with an actor's first RPCs; code
    that needs it waits (wait_for_actor does the same remotely)."""
    while tuple(uid) not in actor.registry:
        await actor.registry.wait_changed()


async def wait_unregistered(actor: na.Actor, name: str) -> None:
    """In the registry's own process: wait (woken by registry changes) until no actor
    called ``name`` is registered."""
    while actor.registry.find_all(name):
        await actor.registry.wait_changed()


@na.context
async def spawn_leaf(ctx) -> None:
    """Start a daemon child 'leaf', report its pid, then supervise it."""
    async with na.open_nursery() as n:
        portal = await n.start_actor("leaf", enable_modules=[__name__])
        await ctx.started(await portal.run(my_pid))
        await trio.sleep_forever()


class TestFind:
    @trio_test
    async def test_registry_is_local_portal_in_root(self, reg):
        """Test that the root hosts the registry and get_registry/get_arbiter give an
        in-process portal listing the root itself."""
        async with na.open_root_actor(**reg) as actor:
            assert actor.is_arbiter
            async with na.get_registry() as portal:
                assert isinstance(portal, LocalPortal)
                table = await portal.run_from_ns("self", "get_registry")
            assert table == {f"{actor.uid[0]}.{actor.uid[1]}": actor.accept_addr}
            async with na.get_arbiter(addr=reg["registry_addrs"][0]) as portal:
                assert isinstance(portal, LocalPortal)
            # tractor's spellings of the registry address work too
            assert await na.query_actor(actor.name, arbiter_sockaddr=reg["registry_addrs"][0]) == actor.accept_addr
            assert await na.query_actor(actor.name, registry_addrs=reg["registry_addrs"]) == actor.accept_addr

    @trio_test
    async def test_get_registry_where_nothing_listens_is_oserror(self, reg):
        """Test that asking for a registry at an address where nothing listens raises OSError."""
        async with na.open_root_actor(**reg):
            with pytest.raises(OSError):
                async with na.get_registry(addr=testing.private_registry_addr()):
                    pass
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await listeners[0].aclose()
            with pytest.raises(OSError):
                async with na.get_arbiter("127.0.0.1", port):
                    pass

    @trio_test
    async def test_find_query_and_wait(self, reg):
        """Test find_actor/query_actor for a live and a missing name, and that
        wait_for_actor waits for an actor spawned after it started waiting."""
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                assert await na.query_actor("late") is None
                async with na.find_actor("late") as nobody:
                    assert nobody is None
                found = {}

                async def waiter():
                    async with na.wait_for_actor("late") as portal:
                        found["uid"] = await portal.run(my_uid)

                async with trio.open_nursery() as tn:
                    tn.start_soon(waiter)
                    await trio.testing.wait_all_tasks_blocked()
                    assert not found  # really waiting
                    late = await n.start_actor("late", enable_modules=[__name__])
                assert tuple(found["uid"]) == late.channel.uid
                async with na.find_actor("late") as portal:
                    assert tuple(await portal.run(my_uid)) == late.channel.uid
                assert (await na.query_actor("late")).startswith("uds:")
                await late.cancel_actor()

    @trio_test
    async def test_child_found_once_it_answered(self, reg):
        """Test that a child of the registry can be found by name as soon as it has
        answered a call (its parent registers it when it connects back)."""
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                p = await n.start_actor("prompt", enable_modules=[__name__])
                await p.run(my_uid)
                async with na.find_actor("prompt") as found:
                    assert found is not None and found.channel.uid == p.channel.uid
                await p.cancel_actor()

    @trio_test
    async def test_names_can_repeat(self, reg):
        """Test that several live actors may share a name: find_actor gives one of
        them, find_actors gives all of them."""
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                twins = [await n.start_actor("twin", enable_modules=[__name__]) for _ in range(3)]
                uids = {p.channel.uid for p in twins}
                for uid in uids:
                    await wait_registered(na.current_actor(), uid)
                async with na.find_actors("twin") as found:
                    assert {tuple(await p.run(my_uid)) for p in found} == uids
                async with na.find_actor("twin") as one:
                    assert tuple(await one.run(my_uid)) in uids
                await n.cancel()

    @trio_test
    async def test_nested_child_finds_sibling_of_parent(self, reg):
        """Test that an actor deep in the tree finds another through the root's registry."""
        with trio.fail_after(TIMEOUT):
            async with na.open_nursery(**reg) as n:
                target = await n.start_actor("target", enable_modules=[__name__])
                seeker = await n.run_in_actor(find_and_call, name="seeker", target="target")
                assert tuple(await seeker.result()) == target.channel.uid
                await target.cancel_actor()


async def find_and_call(target: str) -> list:
    async with na.wait_for_actor(target) as portal:
        return await portal.run(my_uid)


class TestDeregister:
    @trio_test
    async def test_deregistered_on_cancel_while_root_lives(self, reg):
        """Test that after a cancelled child is reaped, the registry no longer lists it."""
        with trio.fail_after(TIMEOUT):
            async with na.open_root_actor(**reg) as actor:
                async with na.open_nursery() as n:
                    p = await n.start_actor("brief", enable_modules=[__name__])
                    await wait_registered(actor, p.channel.uid)
                    await p.cancel_actor()
                assert await na.query_actor("brief") is None
                assert await actor.get_registry() == {f"root.{actor.uid[1]}": actor.accept_addr}

    @trio_test
    async def test_crashed_child_removed_by_parent(self, reg):
        """Test that a child killed with SIGKILL leaves the registry (its parent, the
        registry here, removes it) and the nursery reports the crash."""
        with trio.fail_after(TIMEOUT):
            async with na.open_root_actor(**reg) as actor:
                with pytest.raises(na.ActorCrashed):
                    async with na.open_nursery() as n:
                        p = await n.start_actor("doomed", enable_modules=[__name__])
                        os.kill(await p.run(my_pid), signal.SIGKILL)
                        await trio.sleep_forever()
                assert not actor.registry.find_all("doomed")

    @trio_test
    async def test_killed_grandchild_leaves_registry(self, reg):
        """Test that a SIGKILLed actor whose parent is not the registry still leaves the
        registry (the registry drops it when its channel closes)."""
        with trio.fail_after(TIMEOUT):
            async with na.open_root_actor(**reg) as actor:
                async with na.open_nursery() as n:
                    middle = await n.start_actor("middle", enable_modules=[__name__])
                    with pytest.raises(na.ActorCrashed) as info:
                        async with middle.open_context(spawn_leaf) as (ctx, leaf_pid):
                            async with na.wait_for_actor("leaf"):
                                pass
                            os.kill(leaf_pid, signal.SIGKILL)
                            await wait_unregistered(actor, "leaf")
                            await ctx.result()
                    assert "leaf" in str(info.value) and "SIGKILL" in str(info.value)
                    await middle.cancel_actor()
                assert actor.registry.find_all("middle") == []


SERVICE_MODULE = """
import os
import trio.testing
import notebook_actors as na

async def registry_when_idle():
    # the registry's table once every task there (channel readers that may have an
    # EOF to process) has run and blocked: no race with a peer's death
    await trio.testing.wait_all_tasks_blocked()
    return await na.current_actor().get_registry()

def double(x):
    return 2 * x

def who():
    actor = na.current_actor()
    return [actor.name, os.getpid(), actor.is_arbiter]
"""

DAEMON = """
import sys
import notebook_actors as na
na.run_daemon(["svc_{tag}"], name="daemon", registry_addrs=[sys.argv[1]])
"""

PROGRAM_B = """
import sys
import trio
import notebook_actors as na
import svc_{tag} as svc

async def main():
    async with na.open_root_actor(name="prog_b", registry_addrs=[sys.argv[1]], enable_modules=["svc_{tag}"]) as me:
        print("joined", not me.is_arbiter, flush=True)
        async with na.wait_for_actor("prog_c") as c:
            print("c says", await c.run(svc.double, x=21), flush=True)
        async with na.find_actor("daemon") as d:
            print("daemon", (await d.run(svc.who))[0], flush=True)
        if sys.argv[2] == "stay":
            print("staying", flush=True)
            await trio.sleep_forever()

trio.run(main)
"""


@pytest.fixture
def programs(tmp_path, monkeypatch):
    """Scripts for a daemon and a client program, and their shared service module."""
    tag = uuid.uuid4().hex[:8]
    (tmp_path / f"svc_{tag}.py").write_text(SERVICE_MODULE)
    (tmp_path / "daemon.py").write_text(DAEMON.format(tag=tag))
    (tmp_path / "prog_b.py").write_text(PROGRAM_B.format(tag=tag))
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    return tmp_path, tag, env


async def start_daemon(path, reg_addr: str, env: dict) -> trio.Process:
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(path / "daemon.py"), reg_addr],
        env={**os.environ, **env},
        start_new_session=True,
    )
    sock = reg_addr[len("uds:") :]
    if not await trio.to_thread.run_sync(testing.wait_for_path, sock, 30.0):
        proc.kill()
        await proc.wait()
        pytest.fail("the registry daemon did not start listening")
    return proc


async def stop_daemon(proc: trio.Process) -> int:
    proc.send_signal(signal.SIGINT)
    with trio.fail_after(30):
        return await proc.wait()


class TestMultiProgram:
    @trio_test
    async def test_programs_find_and_call_each_other(self, programs):
        """Test that separate programs (a run_daemon registry, a client script and this
        process) join the daemon's registry, find each other by name and call each
        other's functions; the daemon exits on SIGINT and removes its socket file."""
        path, tag, env = programs
        reg_addr = testing.private_registry_addr()
        daemon = await start_daemon(path, reg_addr, env)
        try:
            with trio.fail_after(TIMEOUT):
                svc = __import__(f"svc_{tag}")
                async with na.open_root_actor(
                    name="prog_c", registry_addrs=[reg_addr], enable_modules=[f"svc_{tag}"]
                ) as me:
                    assert not me.is_arbiter  # a registry already listened: joined it
                    async with na.get_registry() as reg:
                        assert not isinstance(reg, LocalPortal)
                        assert any(k.startswith("prog_c.") for k in await reg.run_from_ns("self", "get_registry"))
                    async with na.find_actor("daemon") as d:
                        assert await d.run(svc.who) == ["daemon", daemon.pid, True]
                    b = await trio.run_process(
                        [sys.executable, str(path / "prog_b.py"), reg_addr, "go"],
                        env={**os.environ, **env},
                        capture_stdout=True,
                        capture_stderr=True,
                        check=False,
                    )
                    out = b.stdout.decode()
                    assert b.returncode == 0, b.stderr.decode()
                    assert out.splitlines() == ["joined True", "c says 42", "daemon daemon"]
                    async with na.find_actor("daemon") as d:
                        table = await d.run(svc.registry_when_idle)
                    assert not any(k.startswith("prog_b.") for k in table)  # it left on exit
        finally:
            await stop_daemon(daemon)
        assert not os.path.exists(reg_addr[len("uds:") :])

    @trio_test
    async def test_killed_program_leaves_registry(self, programs):
        """Test that a whole program killed with SIGKILL is dropped from the daemon's
        registry, and the daemon keeps serving the others."""
        path, tag, env = programs
        reg_addr = testing.private_registry_addr()
        daemon = await start_daemon(path, reg_addr, env)
        b = None
        try:
            with trio.fail_after(TIMEOUT):
                async with na.open_root_actor(name="prog_c", registry_addrs=[reg_addr], enable_modules=[f"svc_{tag}"]):
                    b = await trio.lowlevel.open_process(
                        [sys.executable, str(path / "prog_b.py"), reg_addr, "stay"],
                        env={**os.environ, **env},
                        stdout=subprocess.PIPE,
                        start_new_session=True,
                    )
                    lines = b""
                    while b"staying" not in lines:
                        chunk = await b.stdout.receive_some()
                        assert chunk, "prog_b exited early"
                        lines += chunk
                    assert await na.query_actor("prog_b") is not None
                    b.kill()
                    await b.wait()
                    await b.stdout.aclose()
                    svc = __import__(f"svc_{tag}")
                    async with na.find_actor("daemon") as d:
                        table = await d.run(svc.registry_when_idle)
                    assert not any(k.startswith("prog_b.") for k in table)
                    assert any(k.startswith("prog_c.") for k in table)
        finally:
            if b is not None and b.returncode is None:
                b.kill()
                await b.wait()
            await stop_daemon(daemon)

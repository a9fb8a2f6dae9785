"""The "forkserver" spawn backend (notebook_actors._forkserver): each spawning actor's
warm template forks its children, born children of that actor. Real templates, real
forks, real sockets."""

from __future__ import annotations

import os
import signal
import textwrap

import psutil
import pytest
import trio
import trio.testing

import notebook_actors as na
from notebook_actors import _forkserver, testing

MOD = __name__


@pytest.fixture
def root_kw():
    return {"registry_addrs": [testing.private_registry_addr()], "start_method": "forkserver"}


def whoami() -> dict:
    return {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "cwd": os.getcwd()}


async def asyncio_sleep_and_add(x: int) -> int:
    import asyncio

    await asyncio.sleep(0)
    return x + 1


async def via_asyncio(x: int) -> int:
    from notebook_actors import to_asyncio

    return await to_asyncio.run_task(asyncio_sleep_and_add, x=x)


def boom() -> None:
    raise ValueError("forked boom")


async def spawn_grandchild() -> dict:
    async with na.open_nursery() as n:
        portal = await n.run_in_actor(whoami, name="grandchild")
        return {"me": os.getpid(), "grandchild": await portal.result()}


def test_forked_actor_is_a_child_of_its_spawner_in_its_own_session(root_kw):
    """Test that a forked actor returns its result, is a child process of the actor
    that spawned it (not of the template), runs in its own session and in the
    spawner's working directory."""

    async def main():
        async with na.open_root_actor(**root_kw):
            server = await _forkserver.ensure_started(wait_ready=True)
            async with na.open_nursery() as n:
                portal = await n.run_in_actor(whoami)
                info = await portal.result()
            return info, server.proc.pid

    info, template_pid = trio.run(main)
    assert info["ppid"] == os.getpid()
    assert info["pid"] not in (os.getpid(), template_pid)
    assert info["sid"] == info["pid"]
    assert info["cwd"] == os.getcwd()


def read_env(var: str) -> str | None:
    return os.environ.get(var)


def test_forked_actor_sees_the_environment_of_its_spawn_time(root_kw, monkeypatch):
    """Test that a variable set after the template started reaches an actor forked
    afterwards, as it would reach a subprocess started then."""

    async def main():
        async with na.open_root_actor(**root_kw):
            await _forkserver.ensure_started(wait_ready=True)
            monkeypatch.setenv("NA_TEST_LATE_VAR", "late")
            async with na.open_nursery() as n:
                portal = await n.run_in_actor(read_env, var="NA_TEST_LATE_VAR")
                return await portal.result()

    assert trio.run(main) == "late"


def test_template_stops_with_the_actor_that_started_it(root_kw):
    """Test that the template process exits when the root actor that owns it ends."""

    async def main():
        async with na.open_root_actor(**root_kw):
            server = await _forkserver.ensure_started(wait_ready=True)
            pid = server.proc.pid
            assert testing.alive(pid)
        return pid

    pid = trio.run(main)
    assert testing.wait_until_gone([pid]) == []


def test_error_in_forked_actor_is_boxed(root_kw):
    """Test that an error raised in a forked actor reaches the nursery as a
    RemoteActorError carrying the original type."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            await n.run_in_actor(boom)

    with pytest.raises(na.RemoteActorError, match="forked boom") as info:
        trio.run(main)
    assert info.value.type is ValueError


def test_forked_actor_forks_its_own_children(root_kw):
    """Test that an actor forked by the template spawns its own children through a
    template of its own, and they are its child processes."""

    async def main():
        async with na.open_root_actor(**root_kw):
            async with na.open_nursery() as n:
                portal = await n.run_in_actor(spawn_grandchild, enable_modules=[MOD])
                return await portal.result()

    result = trio.run(main)
    assert result["grandchild"]["ppid"] == result["me"]
    assert result["grandchild"]["pid"] != result["me"]


def test_ten_forked_daemons_serve_and_cancel(root_kw):
    """Test that ten forked daemon actors each answer RPC and all exit on cancel."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portals = [await n.start_actor(f"d{i}", enable_modules=[MOD]) for i in range(10)]
            infos = [await p.run(whoami) for p in portals]
            await n.cancel()
            return infos

    infos = trio.run(main)
    assert len({i["pid"] for i in infos}) == 10
    assert testing.wait_until_gone([i["pid"] for i in infos]) == []


def test_sigkilled_forked_actor_is_reported_with_its_signal(root_kw):
    """Test that a forked actor killed with SIGKILL is reported as crashed by SIGKILL
    (its parent reaps it and sees the signal)."""

    async def main():
        with trio.fail_after(30):  # hang guard
            async with na.open_nursery(**root_kw) as n:
                portal = await n.start_actor("victim", enable_modules=[MOD])
                info = await portal.run(whoami)
                os.kill(info["pid"], signal.SIGKILL)
                await trio.sleep_forever()  # the crash cancels this body

    with pytest.raises(na.ActorCrashed, match="SIGKILL"):
        trio.run(main)


SCRIPT = textwrap.dedent(
    """
    import os, sys, trio
    import notebook_actors as na
    from notebook_actors import _forkserver
    sys.path.insert(0, {testdir!r})
    from test_forkserver import whoami

    async def main():
        async with na.open_nursery(registry_addrs=[{reg!r}], start_method="forkserver") as n:
            p = await n.start_actor("leaf", enable_modules=["test_forkserver"])
            info = await p.run(whoami)
            print(info["pid"], _forkserver._server.proc.pid, flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


def test_kill_9_of_the_owner_leaves_no_template_nor_actors(tmp_path):
    """Test that SIGKILL of the program that owns the template takes the template and
    every forked actor with it."""
    script = tmp_path / "owner.py"
    script.write_text(SCRIPT.format(testdir=os.path.dirname(__file__), reg=testing.private_registry_addr()))
    proc = testing.start_script(str(script))
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        leaf, template = (int(x) for x in line.split())
        assert psutil.Process(template).ppid() == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        survivors = testing.wait_until_gone([leaf, template])
        testing.kill_all(survivors)
        assert survivors == []
    finally:
        proc.kill()
        proc.communicate()


def test_concurrent_first_spawns_share_one_template(root_kw):
    """Test that eight spawns started at once, before any template exists, start one
    template between them (each used to start its own: eight processes importing
    the whole runtime for one burst of spawns), and that all eight actors serve."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portals = []

            async def spawn(i: int) -> None:
                portals.append(await n.start_actor(f"burst{i}", enable_modules=[MOD]))

            async with trio.open_nursery() as spawning:
                for i in range(8):
                    spawning.start_soon(spawn, i)
            pids = {(await p.run(whoami))["pid"] for p in portals}
            templates = [c.pid for c in psutil.Process().children() if testing.is_fork_server(c)]
            await n.cancel()
            return pids, templates

    pids, templates = trio.run(main)
    assert len(pids) == 8
    assert len(templates) == 1, f"{len(templates)} templates for one burst of spawns"


def test_unknown_start_method_names_forkserver():
    """Test that an unknown start method's error lists "forkserver" among the choices."""
    with pytest.raises(ValueError, match="forkserver"):
        na.try_set_start_method("no-such-method")


def test_forked_actor_can_be_infected_with_asyncio(root_kw):
    """Test that a forked actor can run trio as a guest on asyncio (infect_asyncio):
    the template itself never started a loop."""

    async def main():
        async with na.open_nursery(**root_kw) as n:
            portal = await n.run_in_actor(via_asyncio, x=41, infect_asyncio=True)
            return await portal.result()

    assert trio.run(main) == 42


def test_a_template_dying_mid_fork_is_named_with_its_signal(root_kw):
    """Test that a spawn whose template dies before answering says how the template
    ended (here: killed by SIGKILL, with its pid), not only that it died."""

    async def main():
        async with na.open_root_actor(**root_kw):
            server = await _forkserver.ensure_started(wait_ready=True)
            pid = server.proc.pid
            os.kill(pid, signal.SIGSTOP)  # the request waits in its backlog, unanswered
            errors = []

            async def fork() -> None:
                with pytest.raises(RuntimeError) as info:
                    await server.fork(b"never read")
                errors.append(str(info.value))

            async with trio.open_nursery() as n:
                n.start_soon(fork)
                await trio.testing.wait_all_tasks_blocked()  # the request is out
                os.kill(pid, signal.SIGKILL)
            return errors, pid

    errors, pid = trio.run(main)
    assert len(errors) == 1
    assert "SIGKILL" in errors[0] and f"pid {pid}" in errors[0], errors[0]

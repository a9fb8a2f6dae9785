"""Stack dumps of live actors (notebook_actors.debug._stacks): ``dump_stacks()``,
``python -m notebook_actors stack NAME`` and SIGUSR1, against a real tree whose actor
``stuck`` is blocked in synchronous code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

import notebook_actors as na
from notebook_actors.testing import descendants, kill_all, private_registry_addr, start_script

HERE = Path(__file__).parent


@pytest.fixture
def tree():
    """The running stuck_tree.py: (its process, its registry, {actor name: pid})."""
    registry = private_registry_addr()
    proc = start_script(str(HERE / "stuck_tree.py"), registry)
    pids: dict[str, int] = {}
    try:
        while len(pids) < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            name, pid = line.split()
            pids[name] = int(pid)
        yield proc, registry, pids
    finally:
        children = [p.pid for p in descendants(proc.pid)]
        kill_all([*children, proc.pid])
        proc.communicate()


def stack(registry: str, name: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "notebook_actors", "stack", name, "--registry", registry, *options],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_stack_names_the_function_an_actor_is_blocked_in(tree):
    """Test that `stack NAME` prints the threads of an actor whose trio loop is blocked
    in sync code, down to the blocking call, and its trio task tree."""
    _, registry, pids = tree
    result = stack(registry, "stuck")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"stacks of actor 'stuck' (pid {pids['stuck']}, uid ")
    main_thread = out.split("thread 'MainThread':")[1].split("trio tasks:")[0]
    assert "in blocked_in_sync_code" in main_thread and "time.sleep(600)" in main_thread
    assert "trio tasks:" in out and "task '<init>'" not in out  # the runtime's tasks are hidden
    assert "hidden: --all shows them" in out.splitlines()[-1]
    everything = stack(registry, "stuck", "--all")
    assert everything.returncode == 0, everything.stderr
    assert "task '<init>'" in everything.stdout and "in blocked_in_sync_code" in everything.stdout


def test_stack_of_a_grandchild_by_path_shows_its_trio_tasks(tree):
    """Test that a path of names finds an actor two levels down, and that its dump
    shows the trio task waiting in user code."""
    _, registry, pids = tree
    result = stack(registry, "middle/waiter")
    assert result.returncode == 0, result.stderr
    tasks = result.stdout.split("trio tasks:")[1]
    assert "in waiting_in_trio" in tasks and "await trio.sleep_forever()" in tasks
    assert f"pid {pids['waiter']}" in result.stdout.splitlines()[0]


def test_stack_of_an_unknown_actor_says_which_exist(tree):
    """Test that an unknown name fails with one line naming the actors there are."""
    _, registry, _ = tree
    result = stack(registry, "nobody")
    assert result.returncode == 1
    assert "no live actor 'nobody'" in result.stderr and "stuck" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigusr1_dumps_an_actors_stacks_to_the_roots_stderr(tree):
    """Test that SIGUSR1 to a blocked child makes its stacks appear on the root's
    stderr (relayed through the tree), and that the child keeps running."""
    proc, _, pids = tree
    os.kill(pids["stuck"], signal.SIGUSR1)
    seen = []
    while "in blocked_in_sync_code" not in "".join(seen):
        line = proc.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
    assert any("SIGUSR1: stacks of actor 'stuck' (pid" in line for line in seen)
    os.kill(pids["stuck"], 0)  # still alive


def test_dump_stacks_api_from_the_root_and_from_a_child():
    """Test that `await notebook_actors.dump_stacks(name)` returns the stacks in the
    root and in a child (through the root), and raises LookupError for no such actor."""

    async def main() -> None:
        async with na.open_nursery(registry_addrs=[private_registry_addr()]) as n:
            portal = await n.start_actor("asker", enable_modules=[__name__])
            text = await portal.run(_dump_root)  # asked in the child, dumped at the root
            assert text.startswith("stacks of actor 'root' (pid ")
            assert "await portal.run(_dump_root)" in text.split("trio tasks:")[1]  # where main waits now
            asker = await na.dump_stacks("asker")  # idle: only the runtime's frames, hidden
            assert asker.startswith("stacks of actor 'asker' (pid ") and "thread 'MainThread'" not in asker
            assert "hidden: --all shows them" in asker
            asker = await na.dump_stacks("asker", everything=True)
            assert asker.startswith("stacks of actor 'asker' (pid ") and "thread 'MainThread'" in asker
            with pytest.raises(LookupError, match="no live actor 'ghost'"):
                await na.dump_stacks("ghost")
            await n.cancel()

    trio.run(main)


async def _dump_root() -> str:
    return await na.dump_stacks("root")


def test_an_ended_root_leaves_no_stack_thread_and_no_pipe():
    """Test that when a root actor ends, its stack thread has ended and closed its end
    of the wake-up pipe: no fd is left for a garbage collection to find (each of
    several runs, without collecting)."""

    async def main() -> None:
        async with na.open_nursery(registry_addrs=[private_registry_addr()]) as n:
            assert any(t.name == "notebook_actors-stacks" for t in threading.enumerate())
            portal = await n.start_actor("leaf", enable_modules=["os"])
            await portal.run("os", "getpid")
            await portal.cancel_actor()

    for _ in range(10):
        before = _pipes()
        trio.run(main)
        assert not any(t.name == "notebook_actors-stacks" for t in threading.enumerate())
        assert _pipes() == before


def _pipes() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the fd of the listing itself
            continue
        if target.startswith("pipe:"):
            found.add(f"{fd}:{target}")
    return found

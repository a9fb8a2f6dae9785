"""Loading, unloading and stopping the kernel's guest-mode runtime (a kernel per test)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from _kernel import Kernel

#: Hang guard while waiting for processes to go away.
WAIT = 30.0


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        alive = [p for p in pids if not gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


@pytest.fixture
def fresh_kernel():
    kernel = Kernel()
    yield kernel
    if kernel.km.is_alive():
        kernel.shutdown()
    else:
        kernel.kc.stop_channels()
        kernel.km.shutdown_kernel(now=True)


def spawn_tree(kernel: Kernel) -> list[int]:
    a = kernel.value("%%actor a\nimport os\nos.getpid()")
    b = kernel.value("%%actor a/b\nimport os\nos.getpid()")
    return [a, b]


def test_load_starts_the_root_actor_in_the_kernel(fresh_kernel):
    """Test that after %load_ext the kernel process runs the root actor, reachable from plain cells."""
    k = fresh_kernel
    assert k.run("%load_ext notebook_actors").status == "ok"
    assert k.run("%load_ext notebook_actors").status == "ok"  # loading twice is harmless
    name, pid = k.value("import os, notebook_actors as na\n(na.current_actor().name, os.getpid())")
    assert (name, pid) == ("kernel", k.pid)
    code = (
        "import trio\n"
        "def where():\n    import os\n    return os.getppid()\n"
        "async with na.open_nursery() as n:\n"
        "    p = await n.run_in_actor(where)\n"
        "    await trio.sleep(0)\n"
        "await p.result()"
    )
    assert k.value(code) == k.pid  # an async cell runs in trio and spawns into the same tree


def test_unload_stops_the_tree_and_waits(fresh_kernel):
    """Test that %unload_ext cancels every actor and returns only once they are gone."""
    k = fresh_kernel
    k.run("%load_ext notebook_actors")
    pids = spawn_tree(k)
    assert k.run("%unload_ext notebook_actors").status == "ok"
    assert [p for p in pids if not gone(p)] == []  # gone already when the cell ended
    run = k.run("%%actor a\n1")
    assert run.status == "error" and "load_ext" in run.error["evalue"]
    assert k.run("%load_ext notebook_actors").status == "ok"  # and it can come back
    assert k.value("%%actor again\n2") == 2


def test_reload_and_stop_give_a_fresh_tree(fresh_kernel):
    """Test that %reload_ext and %actor stop end the old tree; the runtime can start again."""
    k = fresh_kernel
    k.run("%load_ext notebook_actors")
    old = spawn_tree(k)
    assert k.run("%reload_ext notebook_actors").status == "ok"
    assert [p for p in old if not gone(p)] == []
    new = k.value("%%actor a\nimport os\nos.getpid()")
    assert new not in old
    assert k.run("%actor stop").status == "ok"
    assert gone(new)
    assert k.run("%load_ext notebook_actors").status == "ok"
    assert k.value("%%actor a\n3") == 3


def test_kernel_shutdown_leaves_no_actor(fresh_kernel):
    """Test that a kernel shutdown cancels the tree before the kernel exits."""
    k = fresh_kernel
    k.run("%load_ext notebook_actors")
    pids = spawn_tree(k)
    k.shutdown()
    assert wait_gone(pids) == []


def test_kernel_kill_leaves_no_actor(fresh_kernel):
    """Test that SIGKILL of the kernel takes its actors (and theirs) with it."""
    k = fresh_kernel
    k.run("%load_ext notebook_actors")
    pids = spawn_tree(k)
    psutil.Process(k.pid).kill()
    assert wait_gone([k.pid, *pids]) == []


def test_kernel_restart_leaves_no_actor(fresh_kernel):
    """Test that restarting the kernel removes the old tree."""
    k = fresh_kernel
    k.run("%load_ext notebook_actors")
    pids = spawn_tree(k)
    k.km.restart_kernel(now=False)
    assert wait_gone(pids) == []
    k.kc.wait_for_ready(timeout=60)


def test_killing_a_parent_actor_takes_its_child(fresh_kernel):
    """Test zombie safety: SIGKILL of an actor ends its children too, the runtime survives."""
    k = fresh_kernel
    k.run("%load_ext notebook_actors")
    a, b = spawn_tree(k)
    psutil.Process(a).kill()
    assert wait_gone([a, b]) == []
    assert "crashed" in k.run("%actor ls").result["text/plain"]
    assert k.value("%%actor a\n'respawned'") == "respawned"


def test_actor_cell_without_the_extension_says_so(fresh_kernel):
    """Test that %%actor before %load_ext gives a message naming the magic."""
    run = fresh_kernel.run("%%actor a\n1")
    assert run.status == "error"
    assert run.error["ename"] == "UsageError"
    assert "%%actor" in run.error["evalue"] and "not found" in run.error["evalue"]


def test_terminal_ipython_gets_a_clear_message():
    """Test that in an IPython without a running loop, loading explains itself, no traceback."""
    script = textwrap.dedent(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "notebook_actors")
        result = shell.run_cell("%%actor a\\n1")
        print("ERROR-TYPE", type(result.error_in_exec).__name__)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert "need a Jupyter kernel" in text
    assert "Traceback" not in text
    assert "ERROR-TYPE UsageError" in text

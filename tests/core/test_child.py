"""The child entry point's parent-death watch (notebook_actors._child)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death watch is Linux-only")

CHILD = (
    "import sys\n"
    "from notebook_actors._child import _die_with_parent\n"
    "_die_with_parent()\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "print('alive', flush=True)\n"
    "sys.stdin.readline()\n"
)


def test_child_survives_the_exit_of_the_thread_that_spawned_it():
    """Test that a child outlives the (worker) thread that started it; trio spawns from such threads."""
    procs: list[subprocess.Popen] = []

    def spawn() -> None:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        procs.append(child)
        assert child.stdout.readline().strip() == "ready"  # its watch is set up while we live

    spawner = threading.Thread(target=spawn)
    spawner.start()
    spawner.join()
    deadline = time.monotonic() + 30  # hang guard: wait until the OS thread is gone too
    while spawner.native_id in {t.id for t in psutil.Process().threads()}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with procs[0] as child:
        try:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "alive"
        finally:
            child.kill()


def test_child_dies_with_its_parent_process():
    """Test that SIGKILL of the parent process takes the child with it."""
    parent_code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {CHILD!r}], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)\n"
        "assert child.stdout.readline().strip() == 'ready'\n"
        "print(child.pid, flush=True)\n"
        "sys.stdin.readline()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", parent_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as parent:
        child_pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30  # hang guard
    while alive(child_pid):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

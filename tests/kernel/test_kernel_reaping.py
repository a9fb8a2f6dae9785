"""Plain subprocesses that notebook actors start end with the tree, also when the
kernel itself is SIGKILLed (each actor watches its parent and takes its process
group with it); one started in its own session is left alone (the opt-out)."""

from __future__ import annotations

import time

import psutil
import pytest
from _kernel import Kernel

from notebook_actors import testing

#: The issue's bound for the subprocesses to be gone; returns as soon as they are.
GONE_WITHIN = 2.0
#: Hang guard while waiting for a process a cell started.
WAIT = 30.0

START_SLEEPERS = """%%actor starter
import os, subprocess
plain = subprocess.Popen(["sleep", "1000"])
shell = subprocess.Popen(["sh", "-c", "sleep 1001 & wait"])
detached = subprocess.Popen(["sleep", "1002"], start_new_session=True)
{"actor": os.getpid(), "plain": plain.pid, "shell": shell.pid, "detached": detached.pid}
"""


@pytest.fixture
def fresh_kernel():
    kernel = Kernel(load=True)
    yield kernel
    if kernel.km.is_alive():
        kernel.shutdown()
    else:
        kernel.kc.stop_channels()
        kernel.km.shutdown_kernel(now=True)


def _grandchildren_of(pid: int) -> list[int]:
    """The processes below ``pid`` once there is one (the shell's own ``sleep``)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            found = [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"the shell {pid} never started its sleep")


def test_a_kernel_sigkill_takes_the_actors_plain_subprocesses(fresh_kernel):
    """Test that after SIGKILL of the kernel, an actor's plain ``Popen`` children
    (and a shell's own child) are gone within 2 s, not reparented to PID 1 to run
    on, while a process started with ``start_new_session=True`` survives."""
    pids = fresh_kernel.value(START_SLEEPERS)
    started = [pids["actor"], pids["plain"], pids["shell"], *_grandchildren_of(pids["shell"])]
    try:
        psutil.Process(fresh_kernel.pid).kill()
        assert testing.wait_until_gone(started, GONE_WITHIN) == []
        assert testing.alive(pids["detached"]), "a process in its own session opted out"
    finally:
        testing.kill_all([*started, pids["detached"]])

"""Plain subprocesses that notebook actors start end with the tree, also when the
kernel itself is SIGKILLed (each actor watches its parent and takes its process
group with it); one started in its own session is left alone (the opt-out)."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from _kernel import Kernel

from notebook_actors import testing
from notebook_actors.ext import runtime_dir
from notebook_actors.kernel_ext._output_server import SOCKET_DIR_PREFIXES

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


def _socket_dirs() -> set[str]:
    """The kernels' and cell lines' socket directories in this user's runtime dir."""
    where = str(runtime_dir())
    return {os.path.join(where, n) for n in os.listdir(where) if n.startswith(SOCKET_DIR_PREFIXES)}


def test_the_next_kernel_removes_the_socket_dirs_a_sigkilled_kernel_left():
    """Test that the socket directories of a SIGKILLed kernel (its output server's)
    and of its actors (their cell lines) are removed when the next kernel starts its
    output server, while those of a kernel still running stay."""
    doomed, survivor = Kernel(load=True), Kernel(load=True)
    kernels = [doomed, survivor]
    try:
        made = {}
        for kernel in kernels:
            mine = _socket_dirs()
            assert kernel.value("%%actor worker\n1") == 1  # the actor opens its line after it
            deadline = time.monotonic() + WAIT
            while sorted(os.path.basename(d).split("-")[1] for d in _socket_dirs() - mine) != ["cells", "kernel"]:
                assert time.monotonic() < deadline, _socket_dirs() - mine
                time.sleep(0.02)
            made[kernel] = _socket_dirs() - mine
        pids = [doomed.pid, *[p.pid for p in doomed.descendants()]]
        os.kill(doomed.pid, signal.SIGKILL)
        assert testing.wait_until_gone(pids, WAIT) == []
        # the kernel's own is left (an actor that sees its parent's channel close in
        # time removes its line's itself, one killed first cannot)
        assert [d for d in made[doomed] if "na-kernel-" in d and os.path.exists(d)]
        following = Kernel(load=True)
        kernels.append(following)
        assert following.value("%%actor worker\n3") == 3
        assert not any(os.path.exists(d) for d in made[doomed])
        assert all(os.path.exists(d) for d in made[survivor])
        assert survivor.value("%%actor worker\n4") == 4
    finally:
        for kernel in kernels:
            if kernel.km.is_alive():
                kernel.shutdown()
            else:
                kernel.kc.stop_channels()
                kernel.km.shutdown_kernel(now=True)

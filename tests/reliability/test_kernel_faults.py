"""The kernel itself as a fault: ``shutdown_kernel(now=True)``, ``restart_kernel(now=True)``
and SIGKILL of the kernel process, each with a busy 3-level actor tree, leave no actor
process; the next kernel (or the restarted one) starts a clean tree."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from notebook_actors import testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernel"))
from _kernel import Kernel

#: a bound, not a delay
GONE_WITHIN = 30.0

BUSY_TREE = [
    "%%actor a\nimport os\nos.getpid()",
    "%%actor a/b\nimport os\nos.getpid()",
    "%%actor a/b/c\nimport os\nos.getpid()",
]


def busy_tree(k: Kernel) -> list[int]:
    """root kernel -> a -> b -> c, with c busy in a background loop."""
    assert k.run("%load_ext notebook_actors").status == "ok"
    pids = [k.value(cell) for cell in BUSY_TREE]
    k.submit("%%actor a/b/c --bg\nimport trio\nwhile True:\n    await trio.sleep(0.01)")
    return pids


def starts_clean(k: Kernel) -> None:
    """A fresh tree in ``k``: the same names work, and only the new actors exist."""
    if k.run("%load_ext notebook_actors").status != "ok":
        raise AssertionError("the extension did not load")
    new = [k.value(cell) for cell in BUSY_TREE]
    assert {p.pid for p in k.descendants()} >= set(new)
    assert k.run("%actor stop").status == "ok"
    assert testing.wait_until_gone(new, GONE_WITHIN) == []


@pytest.fixture
def kernels():
    started: list[Kernel] = []
    yield started.append
    for k in started:
        try:
            k.kc.stop_channels()
            k.km.shutdown_kernel(now=True)
        except Exception:
            pass


@pytest.mark.parametrize("how", ["shutdown_now", "sigkill"])
def test_kernel_gone_leaves_no_actor_and_a_new_kernel_starts_clean(kernels, how):
    """Test that a kernel shut down at once (shutdown_kernel(now=True)) or SIGKILLed
    takes its whole busy tree with it, and a new kernel builds a clean one."""
    k = Kernel()
    kernels(k)
    pids = busy_tree(k)
    kernel_pid = k.pid
    if how == "sigkill":
        psutil.Process(kernel_pid).kill()
    else:
        k.km.shutdown_kernel(now=True)
    assert testing.wait_until_gone([kernel_pid, *pids], GONE_WITHIN) == []
    fresh = Kernel()
    kernels(fresh)
    starts_clean(fresh)


def test_restart_now_leaves_no_actor_and_the_restarted_kernel_starts_clean(kernels):
    """Test that restart_kernel(now=True) ends the old tree, and the restarted kernel
    loads the extension and builds a clean tree."""
    k = Kernel()
    kernels(k)
    pids = busy_tree(k)
    k.km.restart_kernel(now=True)
    assert testing.wait_until_gone(pids, GONE_WITHIN) == []
    k.kc.wait_for_ready(timeout=60)
    starts_clean(k)


def test_sigkill_of_the_kernel_takes_plain_subprocesses_of_actors(kernels):
    """Test that a plain ``subprocess.Popen`` started by actor code in a notebook is
    gone within 2 s of a SIGKILL of the kernel (the actor takes its process group
    with it when its parent dies), while one started in its own session survives."""
    k = Kernel()
    kernels(k)
    assert k.run("%load_ext notebook_actors").status == "ok"
    plain = k.value("%%actor a\nimport subprocess\nsubprocess.Popen(['sleep', '1000']).pid")
    detached = k.value("%%actor a\nsubprocess.Popen(['sleep', '1001'], start_new_session=True).pid")
    actor = k.value("%%actor a\nimport os\nos.getpid()")
    try:
        psutil.Process(k.pid).kill()
        assert testing.wait_until_gone([k.pid, actor, plain], 2.0) == []
        assert testing.alive(detached)
    finally:
        testing.kill_all([plain, detached])
